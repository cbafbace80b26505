package contract

// Versions lists the versions of event name this build has schemas for,
// oldest first; none for an event it does not know at all.
func Versions(name string) []int {
	var vs []int
	for _, f := range schemaFiles { // sorted by name, then version
		if f.name == name {
			vs = append(vs, f.version)
		}
	}
	return vs
}
