"""TaskFlow decorators (``@task.claude_batch``)."""
