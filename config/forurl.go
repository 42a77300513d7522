package config

import "fmt"

// ForURL is the configuration of `verify --base-url URL` with no
// configuration file: any site, verified with the checks that need no
// deployment (health of /, response times and load of /, security
// headers, TLS when https).
func ForURL(base string) (*Config, error) {
	if f := formats["httpurl"]; !f.re.MatchString(base) || !f.check(base) {
		return nil, fmt.Errorf("--base-url %s", f.says)
	}
	c := Defaults[Config]()
	c.Version, c.App = CurrentVersion, "site"
	c.Backend.HealthPath = "/"
	c.Verification.BaseURL = base
	c.Verification.Categories = []string{"health", "performance", "security"}
	return &c, nil
}
