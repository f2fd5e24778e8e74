"""Features from jagged collections: one numpy implementation, run by Spark and by the server."""
