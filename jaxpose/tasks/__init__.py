"""Engine tasks (`jaxpose.training.Task`) of the pose-transfer models: 3D-CoreNet and NPT.

`jaxpose.tasks.pose_transfer` holds what both share (data, losses, metrics, baselines, the
`jaxpose eval` harness); `jaxpose.tasks.corenet` and `jaxpose.tasks.npt` define the two `TASK`s.
"""
