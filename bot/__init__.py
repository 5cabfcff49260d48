"""Everything Slack, the scheduler and digest, settings and the CLI. The only place that reads configuration."""
