"""Synthetic data generation: LLM backends, the request cache and (next) the methods that
use them. A backend sends chat requests to an OpenAI-compatible endpoint with bounded
concurrency, retries, a rate limit and a cache, and counts what it did for the report."""
