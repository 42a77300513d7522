// Package config reads, validates and describes the native deployment
// configuration (deploy.json), and converts Lawsker's legacy
// deployment_config.json into it.
//
// Loading is strict and exhaustive: every problem in a file is reported at
// once, each with its path (`targets[0].ssh.port: must be 1-65535, got 70000
// (line 12)`); unknown and duplicate keys are rejected. Field rules (required,
// defaults, ranges, patterns, enums) are declared once as struct tags on the
// Go types and drive both the loader and the published JSON Schema.
//
// Secrets are never values in the file: secret fields hold references
// (`env:NAME`, `file:PATH`) that a Resolver turns into values at run time.
package config
