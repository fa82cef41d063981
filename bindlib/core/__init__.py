"""The ground floor: the task, the transformer, accuracy, results records and files (imports nothing else of bindlib)."""
