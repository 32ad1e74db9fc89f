"""jaxfm.data: Grain sources and pipelines, PDE simulators, readers, generators."""
