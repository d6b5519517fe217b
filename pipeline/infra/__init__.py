"""What every layer stands on: config schema and params loading, layout (every path), io,
locks, checkpoint, devices, errors, faults, data files, tracking. Imports nothing."""
