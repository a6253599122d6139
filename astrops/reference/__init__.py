"""The likelihood-based reference (issue 20): an emulator of the simulator
(:mod:`astrops.models.emulator`) inside 21CMMC's explicit Gaussian likelihood (:mod:`.likelihood`),
its posterior on a refined grid (:mod:`.grid`), checked against seed-averaged simulations
(:mod:`.emulator_check`) and compared with the networks' posteriors on mock observations
(:mod:`.compare`)."""
