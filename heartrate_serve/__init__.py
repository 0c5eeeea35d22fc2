"""heartrate-serve: heart-rate monitoring over gRPC on Ray Serve, readings in Redis."""
