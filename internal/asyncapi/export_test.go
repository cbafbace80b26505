package asyncapi

// PayloadSchema is payloadSchema, for the test of what it refuses.
var PayloadSchema = payloadSchema
