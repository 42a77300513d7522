// Package logstore reads and writes the log store of a target:
// VictoriaLogs (Apache-2.0), through its HTTP API, which lawsker-deploy
// reaches over the target's SSH connection. Queries are built from typed
// filters (time window, exact fields, a phrase), never from user text
// pasted into LogsQL.
package logstore
