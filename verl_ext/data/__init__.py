"""Dataset preparation shared by ``data_prep/`` and evaluation: chest X-ray studies -> verl parquet.

* `verl_ext.data.prompt`: the EditGRPO App. E prompt with the views named (`build_prompt`, `ImageSlot`);
* `verl_ext.data.schema`: the parquet row (RL ``prompt`` + SFT ``messages`` + ``images`` + ``reward_model`` ...);
* `verl_ext.data.images`: Qwen2.5-VL pixel-budget resizing (`smart_resize`, `load_image`, `encode_image`);
* `verl_ext.data.views`: view-label normalisation, frontal/lateral classes, prompt wording;
* `verl_ext.data.sections`: MIMIC-CXR report sectioning (official MIT-LCP rules, re-implemented);
* `verl_ext.data.priors`: most-recent-prior linking by numeric date and time, within a split;
* `verl_ext.data.pipeline`: the sharded, parallel, restartable conversion engine and stats.json;
* `verl_ext.data.{mimic,rexgradient,iu_xray,padchest_gr,chexpert_plus}`: per-dataset readers (metadata -> plan);
* `verl_ext.data.archives`: images read in place from (split) zip archives;
* `verl_ext.data.cli`: the command-line front end; `verl_ext.data.output`: reading the output back.

Importing this package imports nothing heavy.
"""
