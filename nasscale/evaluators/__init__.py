"""Ways to score an architecture: proxy training, zero-cost proxies."""
