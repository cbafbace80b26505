package warehouse

import _ "embed"

// OpenAPI is the service's HTTP API as an OpenAPI 3.1 document
// (openapi.json beside this file; docs/http-api.md), held to the real
// routes and answers by TestOpenAPI.
//
//go:embed openapi.json
var OpenAPI []byte
