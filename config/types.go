package config

// CurrentVersion is the configuration format this release reads and writes.
const CurrentVersion = 1

// Field rules are struct tags read by the loader and the schema generator:
//
//	doc:"..."        description (JSON Schema "description", `config schema`)
//	required:"true"  the key must be present
//	default:"<json>" the value used when the key is absent
//	min, max         inclusive bounds of a number
//	minItems         fewest items of an array
//	enum:"a|b"       allowed strings
//	format:"name"    a named string rule (formats.go)
//	items, keys      the format of []string items / map keys
//
// Optional sections are pointers: absent means "not used". Non-pointer
// sections are always present and take their defaults.

// Config is the native deployment configuration (deploy.json).
type Config struct {
	Schema        string        `json:"$schema,omitempty" doc:"JSON Schema of this file, for editors (ignored by lawsker-deploy)"`
	Version       int           `json:"version" required:"true" min:"1" max:"1" doc:"configuration format version; this release reads 1"`
	App           string        `json:"app" required:"true" format:"name" doc:"application name: used in paths, container names and image tags on the target"`
	Environment   string        `json:"environment,omitempty" format:"name" default:"\"production\"" doc:"environment name, shown in reports and notifications"`
	Targets       []Target      `json:"targets" required:"true" minItems:"1" doc:"hosts the release is deployed to"`
	Registry      *Registry     `json:"registry,omitempty" doc:"container registry credentials; omit for a registry that needs none"`
	Backend       Backend       `json:"backend" required:"true" doc:"the backend container"`
	Frontend      *Frontend     `json:"frontend,omitempty" doc:"the static frontend; omit when there is none"`
	Database      *Database     `json:"database,omitempty" doc:"the PostgreSQL database the backend uses; omit when there is none"`
	Redis         *Redis        `json:"redis,omitempty" doc:"the Redis cache the backend uses; omit when there is none"`
	Domains       []string      `json:"domains,omitempty" items:"domain" doc:"public domain names served by nginx on the target"`
	TLS           TLS           `json:"tls" doc:"certificates from an ACME CA (Let's Encrypt)"`
	Monitoring    Monitoring    `json:"monitoring" doc:"Prometheus and Grafana"`
	Verification  Verification  `json:"verification" doc:"the verification suite run after every deploy and rollback"`
	Rollback      Rollback      `json:"rollback" doc:"when a deploy rolls itself back"`
	Snapshots     Snapshots     `json:"snapshots" doc:"pre- and post-deploy snapshots: images, database dump, frontend, configuration"`
	Notifications Notifications `json:"notifications" doc:"where deploy and rollback events are sent"`
	Execution     Execution     `json:"execution" doc:"how the deployment pipeline runs its steps"`
	Maintenance   Maintenance   `json:"maintenance" doc:"the page nginx answers with in maintenance mode and during a rollback's database hold"`
	Rollout       Rollout       `json:"rollout" doc:"how a release reaches the hosts: all at once, in batches of web hosts, or as a canary"`
}

// Rollout says how a release reaches the web hosts.
type Rollout struct {
	Batch      string   `json:"batch,omitempty" doc:"web hosts per batch: a count (\"1\") or a percentage (\"25%\"); each batch is started, health-gated, switched and verified before the next; empty: every host at once"`
	BatchWatch Duration `json:"batch_watch,omitempty" default:"\"2s\"" doc:"how long a switched batch is watched (health through nginx, its backends running steadily) before the next batch starts"`
	Canary     *Canary  `json:"canary,omitempty" doc:"send a share of the traffic to the new release beside the serving one, compare both from nginx's access log, then promote or abort; omit for none"`
}

// Canary is an analysed canary on plain nginx.
type Canary struct {
	Weight          int      `json:"weight" required:"true" min:"1" max:"50" doc:"percent of the clients sent to the new release"`
	Duration        Duration `json:"duration,omitempty" default:"\"5m\"" doc:"how long both releases serve before the verdict"`
	Sticky          bool     `json:"sticky" default:"true" doc:"a cookie keeps each client on the release it first got"`
	MaxErrorRate    float64  `json:"max_error_rate,omitempty" min:"0" max:"1" default:"0.01" doc:"the canary's 5xx rate (0-1) above which it is aborted"`
	MaxLatencyRatio float64  `json:"max_latency_ratio,omitempty" min:"1" max:"100" default:"1.5" doc:"the canary's p95 over the serving release's above which it is aborted (with 50 ms of slack)"`
	MinRequests     int      `json:"min_requests,omitempty" min:"1" max:"1000000" default:"100" doc:"requests the canary must have served for a verdict; fewer means wait, not pass"`
}

// Maintenance is what nginx answers while the app is in maintenance mode
// (lawsker-deploy maintenance on) or a rollback holds it: 503 with
// Retry-After and a page; the health path and ACME tokens are still served.
type Maintenance struct {
	Message    string   `json:"message,omitempty" default:"\"We are updating the service. Please retry in a few minutes.\"" doc:"text of the default page (maintenance on --message replaces it)"`
	Page       string   `json:"page,omitempty" format:"path" doc:"an HTML file served instead of the default page ({{message}} in it is replaced by the message)"`
	RetryAfter Duration `json:"retry_after,omitempty" default:"\"30s\"" doc:"the Retry-After header of maintenance answers (whole seconds)"`
}

// Target is one host the release goes to.
type Target struct {
	Name   string   `json:"name" required:"true" format:"name" doc:"short name of the host, unique in the file"`
	Host   string   `json:"host" required:"true" format:"host" doc:"host name or IP address reached over SSH"`
	SSH    SSH      `json:"ssh" doc:"how to reach the host"`
	Root   string   `json:"root,omitempty" format:"abspath" default:"\"/srv\"" doc:"folder under which <app>/releases, <app>/current and the state file live"`
	Docker Docker   `json:"docker" doc:"the Docker engine on the host"`
	Nginx  Nginx    `json:"nginx" doc:"the nginx on the host that serves the app"`
	Roles  []string `json:"roles,omitempty" enum:"web|worker" default:"[\"web\"]" doc:"what the host runs: web (the backend behind nginx) and/or worker (backend.worker_command, no nginx)"`
}

// HasRole says whether the target runs role.
func (t Target) HasRole(role string) bool {
	for _, r := range t.Roles {
		if r == role {
			return true
		}
	}
	return false
}

// Docker says how to reach the Docker engine on a target.
type Docker struct {
	Host string `json:"host,omitempty" format:"dockerhost" doc:"DOCKER_HOST on the target (unix:///path or tcp://host:port); empty uses the engine's default socket"`
}

// Nginx says how to run the nginx on a target.
type Nginx struct {
	Binary        string `json:"binary,omitempty" format:"command" default:"\"nginx\"" doc:"nginx command on the target"`
	Config        string `json:"config,omitempty" format:"abspath" doc:"main configuration passed as -c; empty uses nginx's own default"`
	Prefix        string `json:"prefix,omitempty" format:"abspath" doc:"prefix passed as -p; empty uses nginx's own default"`
	SitePath      string `json:"site_path,omitempty" format:"abspath" doc:"the file the main configuration includes for this app (a symlink lawsker-deploy switches); default /etc/nginx/sites-enabled/<app>.conf"`
	Listen        int    `json:"listen,omitempty" min:"1" max:"65535" default:"80" doc:"port the app's server block listens on (with TLS: the HTTP-to-HTTPS redirect and ACME HTTP-01)"`
	ListenTLS     int    `json:"listen_tls,omitempty" min:"1" max:"65535" default:"443" doc:"port the HTTPS server blocks listen on when TLS is on"`
	ListenAddress string `json:"listen_address,omitempty" format:"ip" doc:"address the app's server block listens on; empty listens on every address"`
	AccessLog     string `json:"access_log,omitempty" format:"logpath" default:"\"/var/log/nginx/access.log\"" doc:"the host's access log the app's servers write to (combined format) beside each release's own log of its first minutes (the watch window's request errors); \"off\": none"`
}

// SSH says how to connect to a target.
type SSH struct {
	User            string    `json:"user,omitempty" format:"user" default:"\"deploy\"" doc:"remote user"`
	Port            int       `json:"port,omitempty" min:"1" max:"65535" default:"22" doc:"SSH port"`
	Key             SecretRef `json:"key,omitempty" doc:"private key (env:NAME or file:PATH); empty uses the SSH agent"`
	KnownHosts      string    `json:"known_hosts,omitempty" format:"path" default:"\"~/.ssh/known_hosts\"" doc:"known_hosts file the host key is checked against"`
	TrustOnFirstUse bool      `json:"trust_on_first_use,omitempty" doc:"accept and record an unknown host key on first connection (a changed key is always refused)"`
	ConnectTimeout  Duration  `json:"connect_timeout,omitempty" default:"\"10s\"" doc:"bound of one connection attempt"`
	// Via is not configuration: a front door sets it when the host is
	// reached through a forward (a Dagger service) instead of host:port.
	// Every connection to the host then goes through its SSH connection.
	Via string `json:"-"`
}

// Registry holds the credentials of the container registry.
type Registry struct {
	Host     string    `json:"host" required:"true" format:"registry" doc:"registry host, e.g. ghcr.io or 127.0.0.1:5000"`
	Username string    `json:"username,omitempty" doc:"registry user name"`
	Password SecretRef `json:"password,omitempty" doc:"registry password or token"`
}

// Backend is the backend container and how it is started and gated.
type Backend struct {
	Image             string               `json:"image" required:"true" format:"image" doc:"image repository without tag; releases are tagged with the git sha and pinned by digest"`
	Context           string               `json:"context,omitempty" format:"relpath" default:"\"backend\"" doc:"build context inside the source folder"`
	Dockerfile        string               `json:"dockerfile,omitempty" format:"relpath" doc:"Dockerfile inside the context; empty uses the context's Dockerfile, or the Python preset when there is none"`
	Port              int                  `json:"port,omitempty" min:"1" max:"65535" default:"8000" doc:"port the backend listens on inside its container (bridge network)"`
	Network           string               `json:"network,omitempty" enum:"bridge|host" default:"\"bridge\"" doc:"bridge: publish 127.0.0.1:<host port> to the container's port; host: the container shares the host's network and is told its port in port_env"`
	PortEnv           string               `json:"port_env,omitempty" format:"envname" default:"\"PORT\"" doc:"env variable that tells the backend which port to listen on (network host); {port} in a backend.env value says it in the app's own form, e.g. \"127.0.0.1:{port}\""`
	ExtraPorts        []string             `json:"extra_ports,omitempty" items:"portname" doc:"names of more ports each release gets from host_port_min-max beside its own (network host), for {port.NAME} in backend.env values (e.g. a gRPC listener)"`
	HostPortMin       int                  `json:"host_port_min,omitempty" min:"1024" max:"65535" default:"18000" doc:"lowest 127.0.0.1 port a new backend may get on the target"`
	HostPortMax       int                  `json:"host_port_max,omitempty" min:"1024" max:"65535" default:"18999" doc:"highest 127.0.0.1 port a new backend may get on the target"`
	HealthPath        string               `json:"health_path,omitempty" format:"urlpath" default:"\"/api/v1/health\"" doc:"health endpoint used by the health gate"`
	Routes            []string             `json:"routes,omitempty" items:"route" doc:"with a frontend (required then): the paths nginx sends to the backend, any method; \"/v1/\" or \"/v1/*\" is a prefix, \"/healthcheck\" one exact path; the health path is added when no route covers it; every other path is the frontend's. Without a frontend everything goes to the backend"`
	MigrateCommand    []string             `json:"migrate_command,omitempty" doc:"the full argv run once in the new image before the switch, e.g. [\"alembic\", \"upgrade\", \"head\"] (it replaces the image's ENTRYPOINT unless migrate_entrypoint is \"keep\"); empty: no migrations"`
	WorkerCommand     []string             `json:"worker_command,omitempty" doc:"the argv workers run in the release's image (targets with role worker; it replaces the image's ENTRYPOINT like migrate_command)"`
	MigrateEntrypoint string               `json:"migrate_entrypoint,omitempty" enum:"replace|keep" default:"\"replace\"" doc:"replace: migrate_command is the whole argv (the image's ENTRYPOINT is not run); keep: migrate_command is passed to the image's ENTRYPOINT as its arguments"`
	ASGIApp           string               `json:"asgi_app,omitempty" format:"asgiapp" default:"\"app.main:app\"" doc:"module:attribute uvicorn serves in the Python preset (no Dockerfile)"`
	Env               map[string]string    `json:"env,omitempty" keys:"envname" doc:"plain environment variables of the backend"`
	SecretEnv         map[string]SecretRef `json:"secret_env,omitempty" keys:"envname" doc:"environment variables whose values are secrets (written to a 0600 env file on the target)"`
	HealthExpect      HealthExpect         `json:"health_expect" doc:"what a healthy answer of health_path is (the health gate, the watch window and the suite's health check); an HTML page never is"`
	HealthGate        HealthGate           `json:"health_gate" doc:"how a new backend proves it is healthy before traffic moves to it"`
	RollbackWindow    Duration             `json:"rollback_window,omitempty" default:"\"10m\"" doc:"how long the previous backend stays running for an instant switch back"`
	KeepReleases      int                  `json:"keep_releases,omitempty" min:"2" max:"100" default:"5" doc:"releases kept on the target; older ones are pruned (never the current or previous)"`
}

// HealthExpect is what a healthy answer of the health path is.
type HealthExpect struct {
	Status []int             `json:"status,omitempty" default:"[200]" doc:"statuses that count as healthy"`
	Body   string            `json:"body,omitempty" doc:"text the answer must contain (e.g. \"OK\"); empty: any"`
	JSON   map[string]string `json:"json,omitempty" doc:"dotted fields of the JSON answer and the values they must have, e.g. {\"status\": \"pass\", \"checks.db\": \"up\"}; empty: a top-level \"status\" field, when there is one, must say healthy (ok, healthy, pass, up, green, SERVING)"`
}

// HealthGate bounds the health check of a new backend.
type HealthGate struct {
	Interval          Duration `json:"interval,omitempty" default:"\"1s\"" doc:"time between checks"`
	RequestTimeout    Duration `json:"request_timeout,omitempty" default:"\"5s\"" doc:"bound of one request"`
	Deadline          Duration `json:"deadline,omitempty" default:"\"60s\"" doc:"the gate fails when the backend is not healthy by then"`
	ConsecutivePasses int      `json:"consecutive_passes,omitempty" min:"1" max:"100" default:"3" doc:"passes in a row needed"`
}

// Frontend is the static frontend.
type Frontend struct {
	Source       string   `json:"source,omitempty" format:"relpath" default:"\"frontend\"" doc:"frontend folder inside the source folder"`
	BuildCommand []string `json:"build_command,omitempty" default:"[\"npm\",\"run\",\"build\"]" doc:"argv run after npm ci when the folder has a package.json"`
	Output       string   `json:"output,omitempty" format:"relpath" default:"\"dist\"" doc:"build output folder inside source; the files served"`
}

// Database is the application's PostgreSQL database.
type Database struct {
	Host           string    `json:"host,omitempty" format:"host" default:"\"localhost\"" doc:"PostgreSQL host as seen from the target"`
	Port           int       `json:"port,omitempty" min:"1" max:"65535" default:"5432" doc:"PostgreSQL port"`
	Name           string    `json:"name" required:"true" format:"pgident" doc:"database name"`
	User           string    `json:"user" required:"true" format:"pgident" doc:"application role"`
	Password       SecretRef `json:"password" required:"true" doc:"application role's password"`
	SSLMode        string    `json:"sslmode,omitempty" enum:"disable|allow|prefer|require|verify-ca|verify-full" default:"\"prefer\"" doc:"libpq sslmode"`
	Bootstrap      bool      `json:"bootstrap,omitempty" doc:"create the role and database when missing (needs admin_user and admin_password)"`
	AdminUser      string    `json:"admin_user,omitempty" format:"pgident" doc:"role used for bootstrap"`
	AdminPassword  SecretRef `json:"admin_password,omitempty" doc:"password of admin_user"`
	PoolSizeEnv    string    `json:"pool_size_env,omitempty" format:"envname" default:"\"DB_POOL_SIZE\"" doc:"backend env variable that receives the pool size computed from the target's CPUs"`
	MaxOverflowEnv string    `json:"max_overflow_env,omitempty" format:"envname" default:"\"DB_MAX_OVERFLOW\"" doc:"backend env variable that receives the pool overflow"`
	URLEnv         string    `json:"url_env,omitempty" format:"envname" default:"\"DATABASE_URL\"" doc:"backend env variable that receives postgres://user:password@host:port/name?sslmode=... built from these settings (the password from database.password, so no secret is written twice); the migration rehearsal points it at its throwaway database"`
	// MigrationVersionQuery names the version for people when the app's
	// migration tool is not one lawsker-deploy knows.
	MigrationVersionQuery string `json:"migration_version_query,omitempty" doc:"SELECT returning one row of one column: the application's migration version, shown in reports and snapshots when its tool is not one lawsker-deploy recognises (run read-only; decisions compare the schema's fingerprint, never this)"`
}

// Redis is the application's Redis cache.
type Redis struct {
	URL      string    `json:"url" required:"true" format:"redisurl" doc:"redis://host:port/db as seen from the target"`
	Password SecretRef `json:"password,omitempty" doc:"Redis password"`
}

// TLS configures certificates.
type TLS struct {
	Enabled       bool   `json:"enabled,omitempty" doc:"obtain and renew certificates for every domain"`
	Email         string `json:"email,omitempty" format:"email" doc:"ACME account email (expiry notices)"`
	Challenge     string `json:"challenge,omitempty" enum:"http-01|dns-01" default:"\"http-01\"" doc:"ACME challenge; wildcard domains need dns-01"`
	DNSProvider   string `json:"dns_provider,omitempty" format:"name" doc:"lego DNS provider name for dns-01 (its credentials come from the environment)"`
	ACMEDirectory string `json:"acme_directory,omitempty" format:"httpurl" default:"\"https://acme-v02.api.letsencrypt.org/directory\"" doc:"ACME directory URL (any ACME server)"`
	Staging       bool   `json:"staging,omitempty" doc:"use Let's Encrypt's staging directory (untrusted certificates, generous rate limits) instead of acme_directory"`
	// DNSCredentials are the lego DNS provider's settings, by the
	// environment variable names the provider reads (CF_DNS_API_TOKEN, ...).
	DNSCredentials map[string]SecretRef `json:"dns_credentials,omitempty" keys:"envname" doc:"the DNS provider's credentials as secret references, keyed by the variable names lego's provider reads (e.g. CF_DNS_API_TOKEN)"`
	Resolver       string               `json:"resolver,omitempty" format:"hostport" doc:"DNS server (host:port) for the domain check and the DNS-01 propagation check; empty uses the system's"`
	ACMECABundle   string               `json:"acme_ca_bundle,omitempty" format:"path" doc:"PEM file of extra CAs trusted for the ACME server's HTTPS (a private ACME server)"`
}

// Monitoring configures Prometheus and Grafana.
type Monitoring struct {
	Enabled              bool      `json:"enabled,omitempty" doc:"render and apply Prometheus and Grafana configuration"`
	PrometheusURL        string    `json:"prometheus_url,omitempty" format:"httpurl" default:"\"http://127.0.0.1:9090\"" doc:"Prometheus as seen from where verification runs"`
	GrafanaURL           string    `json:"grafana_url,omitempty" format:"httpurl" default:"\"http://127.0.0.1:3000\"" doc:"Grafana as seen from where verification runs"`
	GrafanaAdminPassword SecretRef `json:"grafana_admin_password,omitempty" doc:"Grafana admin password"`
	PrometheusImage      string    `json:"prometheus_image,omitempty" format:"imageref" default:"\"prom/prometheus:v2.55.1\"" doc:"Prometheus image run on the first target (network host)"`
	GrafanaImage         string    `json:"grafana_image,omitempty" format:"imageref" default:"\"grafana/grafana:11.3.0\"" doc:"Grafana image run on the first target; \"none\" renders its provisioning without running it"`
	ScrapeInterval       Duration  `json:"scrape_interval,omitempty" default:"\"15s\"" doc:"Prometheus scrape and rule evaluation interval"`
	NodeExporter         string    `json:"node_exporter,omitempty" format:"hostport" doc:"node_exporter to scrape (host:port as seen from the target); the disk and certificate alerts use it"`
	NginxExporter        string    `json:"nginx_exporter,omitempty" format:"hostport" doc:"nginx-prometheus-exporter to scrape (host:port as seen from the target)"`
	ExtraRules           string    `json:"extra_rules,omitempty" format:"path" doc:"a Prometheus rule file of yours, checked with promtool and applied beside the generated rules"`
	MetricsPath          string    `json:"metrics_path,omitempty" default:"\"/metrics\"" doc:"the path of the backend's Prometheus metrics; \"none\" when the app has none (its backend is then not scraped)"`
	Logs                 Logs      `json:"logs" doc:"log collection into VictoriaLogs on every target (on with monitoring.enabled)"`
}

// Logs configures log collection: the backend's output (Docker's syslog
// driver) and nginx's access and error logs (its syslog: target) go to a
// VictoriaLogs container on each target.
type Logs struct {
	Enabled    bool     `json:"enabled" default:"true" doc:"with monitoring.enabled: collect the backend's output and nginx's access and error logs on every target (false: none; logs then reads docker logs)"`
	Image      string   `json:"image,omitempty" format:"imageref" default:"\"victoriametrics/victoria-logs:v1.52.1\"" doc:"VictoriaLogs image run on every target (network host)"`
	URL        string   `json:"url,omitempty" format:"httpurl" default:"\"http://127.0.0.1:9428\"" doc:"the store's HTTP API on each target: a loopback address (it is never exposed; lawsker-deploy reaches it through SSH)"`
	SyslogPort int      `json:"syslog_port,omitempty" min:"1" max:"65535" default:"5514" doc:"UDP port on 127.0.0.1 where the store takes syslog lines from Docker and nginx"`
	Retention  Duration `json:"retention,omitempty" default:"\"168h\"" doc:"how long lines are kept (at least 24h)"`
	ErrorLines int      `json:"error_lines,omitempty" min:"1" max:"1000" default:"20" doc:"most distinct error lines of a new release in its deploy's report and output"`
}

// LogsOn says whether logs are collected.
func (m Monitoring) LogsOn() bool { return m.Enabled && m.Logs.Enabled }

// Verification configures the verification suite.
type Verification struct {
	BaseURL        string     `json:"base_url,omitempty" format:"httpurl" doc:"URL the suite tests; default https://<first domain>, or the target host over http"`
	SSLBaseURL     string     `json:"ssl_base_url,omitempty" format:"httpurl" doc:"HTTPS URL for the TLS and header checks"`
	Categories     []string   `json:"categories,omitempty" enum:"health|functional|performance|security" default:"[\"health\",\"functional\",\"performance\",\"security\"]" doc:"categories run after a deploy"`
	Thresholds     Thresholds `json:"thresholds" doc:"limits the performance checks enforce"`
	Endpoints      []Endpoint `json:"endpoints,omitempty" doc:"API endpoints checked after every deploy; empty checks backend.health_path (config import of Lawsker's file lists Lawsker's)"`
	Login          Login      `json:"login" doc:"the authentication flow check"`
	UploadPath     string     `json:"upload_path,omitempty" format:"urlpathorempty" doc:"multipart upload endpoint; empty (the default) skips the upload check"`
	Requests       int        `json:"requests,omitempty" min:"1" max:"10000" default:"20" doc:"requests per endpoint for the response-time percentiles"`
	Load           LoadTest   `json:"load" doc:"the concurrent load check"`
	MinHeaderScore int        `json:"min_header_score,omitempty" min:"0" max:"100" default:"70" doc:"security headers score (out of 100) below which the check fails"`
	Ports          PortScan   `json:"ports" doc:"the open-port check of every target"`
	ProtectedFiles []string   `json:"protected_files,omitempty" default:"[\"releases/*/backend.env\"]" doc:"glob patterns (relative to <root>/<app> or absolute) of files that must not be readable by group or others"`
	CheckTimeout   Duration   `json:"check_timeout,omitempty" default:"\"20s\"" doc:"bound of one check"`
	// ConnectTo sends the suite's connections for host:port to another
	// address, like curl --connect-to: verify a host before DNS points at
	// it, or reach a target by its address while checking its domain's
	// certificate.
	ConnectTo map[string]string `json:"connect_to,omitempty" keys:"hostport" doc:"host:port -> host:port the suite connects to instead (like curl --connect-to); the Host header and TLS name stay the URL's"`
	Deadline  Duration          `json:"deadline,omitempty" default:"\"2m\"" doc:"bound of the whole suite"`
}

// Endpoint is a declarative API check.
type Endpoint struct {
	Method     string            `json:"method,omitempty" enum:"GET|POST|PUT|PATCH|DELETE|HEAD" default:"\"GET\"" doc:"HTTP method"`
	Path       string            `json:"path" required:"true" format:"urlpath" doc:"path under the base URL"`
	Headers    map[string]string `json:"headers,omitempty" doc:"extra request headers"`
	Body       string            `json:"body,omitempty" doc:"request body (sent as JSON when it starts with { or [)"`
	Expect     []int             `json:"expect,omitempty" default:"[200]" doc:"accepted statuses"`
	JSONFields []string          `json:"json_fields,omitempty" doc:"dotted fields the JSON answer must have"`
}

// Login is the authentication flow check.
type Login struct {
	Path          string    `json:"path,omitempty" format:"urlpathorempty" doc:"login endpoint (POST); empty (the default) skips the authentication check"`
	Form          bool      `json:"form,omitempty" doc:"send form fields (OAuth2 password flow) instead of JSON"`
	Username      string    `json:"username,omitempty" doc:"a test account; empty checks only that a wrong login is refused"`
	Password      SecretRef `json:"password,omitempty" doc:"the test account's password"`
	TokenField    string    `json:"token_field,omitempty" doc:"JSON field of the token (default access_token, then token)"`
	ProtectedPath string    `json:"protected_path,omitempty" format:"urlpath" default:"\"/api/v1/users/me\"" doc:"endpoint that must accept the token"`
}

// LoadTest shapes the concurrent load check.
type LoadTest struct {
	Concurrency int      `json:"concurrency,omitempty" min:"1" max:"1000" default:"10" doc:"concurrent workers"`
	Duration    Duration `json:"duration,omitempty" default:"\"5s\"" doc:"how long the load runs"`
	Path        string   `json:"path,omitempty" format:"urlpath" doc:"path loaded (default backend.health_path)"`
}

// PortScan lists the ports scanned on each target and those allowed open.
type PortScan struct {
	Scan  []int `json:"scan,omitempty" default:"[21,22,23,25,80,443,2375,2376,3000,3306,5432,6379,8000,8080,9090,9100,11211,27017]" doc:"ports tried on each target"`
	Allow []int `json:"allow,omitempty" default:"[22,80,443]" doc:"ports allowed to answer"`
}

// Thresholds are the performance limits.
type Thresholds struct {
	ResponseTimeMS     int `json:"response_time_ms,omitempty" min:"1" max:"600000" default:"1000" doc:"p95 response time per endpoint"`
	DatabaseQueryMS    int `json:"database_query_ms,omitempty" min:"1" max:"600000" default:"100" doc:"database query latency"`
	MemoryUsagePercent int `json:"memory_usage_percent,omitempty" min:"1" max:"100" default:"80" doc:"memory in use on the target"`
	CPUUsagePercent    int `json:"cpu_usage_percent,omitempty" min:"1" max:"100" default:"80" doc:"CPU in use on the target"`
	DiskUsagePercent   int `json:"disk_usage_percent,omitempty" min:"1" max:"100" default:"90" doc:"disk in use on the target"`
}

// Rollback says when a deploy rolls itself back.
type Rollback struct {
	Auto                            bool     `json:"auto" default:"true" doc:"roll back automatically when a trigger fires"`
	HealthCheckThreshold            int      `json:"health_check_threshold,omitempty" min:"1" max:"100" default:"3" doc:"consecutive failed health checks that trigger a rollback"`
	ErrorRateThreshold              float64  `json:"error_rate_threshold" min:"0" max:"1" default:"0.005" doc:"error rate (0-1) above which a rollback triggers: of the suite's load test, and of the client requests nginx served to the new release in the watch window (its access log, at least 20 requests); the default lets no release through that fails 1 request in 100"`
	PerformanceDegradationThreshold float64  `json:"performance_degradation_threshold,omitempty" min:"1" max:"100" default:"2" doc:"ratio to the previous release's baseline that triggers a rollback"`
	OnSecurityFailure               bool     `json:"on_security_failure,omitempty" doc:"a failed security check triggers a rollback"`
	WatchWindow                     Duration `json:"watch_window,omitempty" default:"\"2m\"" doc:"how long health, error rate and latency are watched after the switch"`
}

// Snapshots configures snapshots.
type Snapshots struct {
	Enabled       bool   `json:"enabled" default:"true" doc:"take pre- and post-deploy snapshots"`
	Store         string `json:"store,omitempty" format:"store" default:"\"target\"" doc:"where snapshots are kept: target (over SFTP) or a gocloud.dev/blob URL"`
	RetentionDays int    `json:"retention_days,omitempty" min:"1" max:"3650" default:"30" doc:"snapshots younger than this are kept"`
	KeepLast      int    `json:"keep_last,omitempty" min:"1" max:"1000" default:"10" doc:"the newest N snapshots are kept whatever their age"`
	// pg_dump's own default (6) spends about three times the CPU of level
	// 1 for a dump a few percent smaller; the pre-deploy snapshot is on the
	// critical path of every deploy.
	DumpCompression int       `json:"dump_compression" min:"0" max:"9" default:"1" doc:"zlib level of the database dump (pg_dump --compress): 0 none, 1 fastest, 9 smallest"`
	AgeRecipient    string    `json:"age_recipient,omitempty" format:"agerecipient" doc:"encrypt dumps and TLS material to this age recipient"`
	AgeIdentity     SecretRef `json:"age_identity,omitempty" doc:"the age identity (AGE-SECRET-KEY-1...) that decrypts them, for restores"`
	// S3 credentials; without them the AWS SDK's default chain is used
	// (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, profiles, instance roles).
	S3AccessKeyID     SecretRef `json:"s3_access_key_id,omitempty" doc:"S3 access key id (default: the AWS SDK's credential chain)"`
	S3SecretAccessKey SecretRef `json:"s3_secret_access_key,omitempty" doc:"S3 secret access key (with s3_access_key_id)"`
}

// Notifications says where events go.
type Notifications struct {
	Email      string `json:"email,omitempty" format:"email" doc:"address that receives deploy and rollback events (needs smtp)"`
	WebhookURL string `json:"webhook_url,omitempty" format:"httpurl" doc:"URL that receives a JSON POST per event"`
	SMTP       *SMTP  `json:"smtp,omitempty" doc:"mail server for email notifications"`
}

// SMTP is a mail server.
type SMTP struct {
	Host     string    `json:"host" required:"true" format:"host" doc:"SMTP server"`
	Port     int       `json:"port,omitempty" min:"1" max:"65535" default:"587" doc:"SMTP port"`
	Username string    `json:"username,omitempty" doc:"SMTP user"`
	Password SecretRef `json:"password,omitempty" doc:"SMTP password"`
	From     string    `json:"from" required:"true" format:"email" doc:"sender address"`
}

// Execution says how the pipeline runs.
type Execution struct {
	Parallel    bool     `json:"parallel" default:"true" doc:"run independent steps in parallel"`
	MaxWorkers  int      `json:"max_workers,omitempty" min:"1" max:"64" default:"3" doc:"most steps running at once"`
	StepTimeout Duration `json:"step_timeout,omitempty" default:"\"10m\"" doc:"default bound of one step attempt"`
	Drain       Duration `json:"drain,omitempty" default:"\"30s\"" doc:"on cancellation, how long running steps may finish before they are aborted"`
}

// Primary is the target that runs the once-per-release work: migrations,
// snapshots and database restores, monitoring, the host checks of the
// verification suite. It is the first of targets (validation requires
// at least one).
func (c *Config) Primary() Target { return c.Targets[0] }
