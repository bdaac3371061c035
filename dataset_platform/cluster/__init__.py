"""Running the graph's units of work beyond this process: on a Ray cluster (``ray_tasks``)."""
