# repabench: reproduce "What matters for Representation Alignment" (iREPA, arXiv 2512.10794).
# Default target: the report. Every rule calls `python -m repabench <stage>`; logic lives in the package.

from snakemake.utils import min_version

min_version("9.0")


# The embedded default, unless presets are given with --configfile: a preset is a whole configuration,
# never an overlay on the demo (which would leak demo-only settings into a cluster study).
if not workflow.overwrite_configfiles:

    configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/encoders.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/sample.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/analysis.smk"
include: "workflow/rules/published.smk"
include: "workflow/rules/report.smk"


rule all:
    default_target: True
    input:
        final_targets(),
