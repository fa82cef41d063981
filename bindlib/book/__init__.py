"""Book-only helpers: findings (verdicts and tables from results files), figures, exercises."""
