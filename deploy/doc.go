// Package deploy turns a configuration into the deployment DAG: which steps
// `deploy` runs, what each needs, their timeouts and retry policies. Plan is
// what `lawsker-deploy plan` and `dagger call plan` show; later stages attach
// the step implementations to the same graph by name, so the plan shown is
// the plan run.
package deploy
