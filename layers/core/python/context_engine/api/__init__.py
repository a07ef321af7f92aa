"""HTTP API v1 on powertools' APIGatewayHttpResolver: routes, auth context, error mapping."""
