"""Gateway: the only public entry. Authentication, rate limits, routing, merged OpenAPI."""
