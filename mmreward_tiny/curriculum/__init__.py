"""Learning-to-see data for the tiny model, drawn from the synthetic world (``data_pipelines.synthetic``)."""
