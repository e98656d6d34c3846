// Package shared is the home of the code both gateway services agree on: the
// job and result schema that travels over JetStream, configuration loading,
// logging and the health/metrics HTTP server. It holds no business logic.
package shared
