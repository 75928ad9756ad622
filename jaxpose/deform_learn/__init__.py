"""Deform-and-learn: body shape and pose from dense correspondences, registration alternated with a ConvNet.

A reconstruction of Yoshiyasu & Gamez, "Learning Body Shape and Pose from Dense Correspondences"; design,
sources and every reconstructed piece in docs/deform_learn.md. Modules (one concept each):

  body          segment-scale body: `segment_scale_forward(body, pose (24, 3), scales (24,))`, `posed_body`
  camera        weak perspective x = s·Π(R·X) + t: `gram_schmidt`, `weak_perspective`, `determinant_loss`,
                `pixels_to_normalised` / `normalised_to_pixels`
  params        θ = {pose (23, 3), scales (24,), rotation (9,), cam_scale, cam_trans (2,)}:
                `initial_params` (T-pose), `predict_points`, `params_to_vector` / `vector_to_params` (105-d)
  registration  L = ω_dense L_dense + ω_KP L_KP + ω_scale L_scale + ω_joint L_joint + ω_det L_det;
                `register` (Adam on `jaxpose.optim`, jit(vmap) over images), `RegistrationWeights`
  ground_truth  the segment-scale θ of a ground-truth body and camera (the supervised upper bound)
  charts        DensePose-style per-part (U, V) charts of any body; pixel → nearest chart vertex
  synthetic     synthetic images with dense labels, keypoints and ground truth (`DeformLearnDataConfig`)
  densepose_json  reader/writer of DensePose-COCO-style annotation JSON
  lifter        cGAN 2D → 3D joint lifter (after Kudo et al.)
  resnet        ResNet regressor backbone (ResNet-50 preset and CPU-sized ones)
  tasks         engine tasks "deform_learn_lifter" and "deform_learn_regressor"
  evaluation    the paper's protocol MPJPE (skeleton scaled to a canonical bone length)
  loop          `run_loop(config, workdir)`: the alternation, resumable, with the paper's three curves
  comparisons   the fully supervised and "no iteration" regressors at the same budget
  cli_loop, cli_register   `jaxpose deform-learn`, `jaxpose register`
"""
