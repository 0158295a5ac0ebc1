"""Layer 8, jobs: whole runs built from training, evaluation and metrics (:mod:`.main_job`, the
``easyedit-split run`` pipeline)."""
