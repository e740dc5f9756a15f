# hms_infer: run kernel.py from the attached bundle (any mount layout) and check that it wrote the submission.
import glob
import os
import subprocess
import sys

INPUT = os.environ.get("HMS_INPUT_DIR", "/kaggle/input")
SUBMISSION = os.path.join(os.environ.get("HMS_WORKING_DIR", "/kaggle/working"), "submission.csv")
# <input>/<slug>, <input>/<owner>/<slug>, <input>/datasets/<owner>/<slug>: kernel.py beside the bundle's manifest
kernels = sorted(path for depth in range(1, 5)
                 for path in glob.glob(os.path.join(INPUT, *["*"] * depth, "kernel.py"))
                 if os.path.isfile(os.path.join(os.path.dirname(path), "weights_manifest.yaml")))
assert kernels, f"no kernel.py beside a weights_manifest.yaml under {INPUT}: add the hms_infer bundle to the notebook"
if len(kernels) > 1:
    print(f"hms_infer: several bundles attached, running the first: {kernels}")
if os.path.exists(SUBMISSION):
    os.remove(SUBMISSION)  # a stale file must not pass for this run's
subprocess.run([sys.executable, kernels[0]], check=True)
assert os.path.isfile(SUBMISSION), f"{kernels[0]} ended without writing {SUBMISSION}"
print(f"hms_infer: {SUBMISSION} written ({os.path.getsize(SUBMISSION)} bytes)")
