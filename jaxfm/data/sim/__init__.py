"""PDE simulators (pure JAX); see SIMULATORS in jaxfm.data.sim.registry."""
