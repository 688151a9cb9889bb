"""MLflow glue: the default store, run setup, pipelines, pyfunc packaging, registry, evaluation.

Modules (imported on demand; none of them loads torch at import except ``pipeline`` users):
``store`` (the one default store), ``runs`` (start_run, log_cv_summary), ``pipeline`` (Pipeline,
PIPELINE_EXTRAS), ``packaging`` (log_pipeline), ``pyfunc_model`` (the models-from-code file),
``registry`` (register, promote, rollback, list_models), ``evaluation`` (evaluate_model), ``cli``.
"""
