"""Window compression: strategies (summarize, truncate, importance) and summarizers."""
