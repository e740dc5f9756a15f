"""One module per command, each owning its API function (the CLI's adapters call them by keyword); below them, the
library (ensemble, members, data, models, ...), which imports no task.

    predict        the main command: a test folder -> submission.csv          (hms_infer.predict)
    inputs         the exact model inputs of every row, as an .npz
    manifest       a weights manifest for checkpoints (presets recognised)
    convert        checkpoints -> .safetensors
    score          Kaggle's KL divergence of a submission
    parity         recompute saved out-of-fold logits and compare
    fit_weights    blend weights (and temperatures) fitted on OOF logits, cross-validated
    evaluate       vote-aware scores of prediction sets, with intervals         (hms_infer.evaluate)
    pseudo_labels  out-of-fold noisy-student labels for the training code
    bench          the end-to-end path timed on synthetic rows
    report         a page per row: what the models saw
    timeline       the predictions along whole recordings, against the experts' windows
    demo           the whole pipeline on synthetic data with random weights
    bundle         the Kaggle offline bundle (build_wheels.sh)
"""
