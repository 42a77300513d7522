package rollout

// DatabaseStatus is what a rollback did to the database.
type DatabaseStatus string

// Database statuses.
const (
	// DatabaseUntouched: the release's migrations did not run.
	DatabaseUntouched DatabaseStatus = "unchanged"
	// DatabaseKept: the migrations ran and left the schema as it was.
	DatabaseKept DatabaseStatus = "kept"
	// DatabaseRestored: restored from the pre-deploy (or the chosen)
	// snapshot; the replaced database is kept.
	DatabaseRestored DatabaseStatus = "restored"
	// DatabaseNotRestored: it should have been and was not; Detail says
	// why and what to run.
	DatabaseNotRestored DatabaseStatus = "not_restored"
)

// DatabaseOutcome is the database's part of a rollback: a status to decide
// on, a detail for people.
type DatabaseOutcome struct {
	Status DatabaseStatus `json:"status"`
	Detail string         `json:"detail"`
}

// String reads as the report's database line.
func (d *DatabaseOutcome) String() string {
	if d == nil {
		return ""
	}
	switch d.Status {
	case DatabaseUntouched:
		return "unchanged: " + d.Detail
	case DatabaseKept:
		return "kept: " + d.Detail
	case DatabaseRestored:
		return "restored " + d.Detail
	}
	return "NOT restored: " + d.Detail
}
