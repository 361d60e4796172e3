"""Every shell command in README.md runs as written, shortened, on this install.

The README's ```sh blocks are split into commands (`\\` continuations joined, `&&` chains
split, `# comments` dropped) and, in README order, run with the interpreter running the
tests (sys.executable, standing in for `.venv/bin/python`) in one fresh temporary
directory holding copies of main.py, flags/ and examples/, so every relative path in a
command (runs/demo, exports/..., data/fer2013.csv, face.png) lands in that directory and
a command can use what an earlier one wrote (export reads the run that train made).
`python main.py ...` commands run through conftest.py's main_py: each in a process of its
own (its exit status and output as a fresh one gives them), forked from one that imported
TensorFlow and the modes once, which saves ~10 s a command; the interpreter's start-up
itself is what tests/test_quiet.py runs fresh. FACEEXPR_TESTS_FRESH_MAIN=1 runs each in a
fresh interpreter instead. Other scripts (tools/, examples/) run as subprocesses.

Shortened: training commands get overrides appended (absl: a flag after a flagfile
wins): 2 steps of tiny networks. The FER2013 flagfiles train on a small FER2013-format
csv written at data/fer2013.csv; photos are scikit-image's astronaut. An optional part
`[--a=x|y ...]` runs once without and once with it (the alternative in PICK, else the
first). Commands that cannot run here are in NOT_RUN with the reason; a command that is
in neither fails test_every_readme_command_is_run_or_listed with its text, so a new
README command cannot go unchecked.
"""

import functools
import os
import re
import shlex
import shutil
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(REPO, "README.md")
PYTHONS = ("python", "python3", ".venv/bin/python", ".venv/bin/python3")

# Commands not run, by the start of their text (after `python` is normalised) -> why.
NOT_RUN = {
    "python -m venv": "set-up: the tests run on the interpreter running pytest, which CI "
                       "installs with the README's own command",
    ".venv/bin/pip install": "set-up: as above (test_readme_extras_exist checks that every "
                             "extra the README names is defined in pyproject.toml)",
    "python -m pytest": "the test suite itself, which runs this file",
    "docker run": "needs Docker and the tensorflow/serving image (network)",
    "python -m faceexpr_tf.serving.serving_client": "needs a running TF Serving server (the docker "
                                            "command); tests/test_serving_client.py runs "
                                            "the client against in-process REST and gRPC "
                                            "stand-ins",
    "python main.py serve": "a long-running server; covered by tests/test_serve.py (REST, "
                            "the serving client) and tests/test_serve_browser.py (the page "
                            "in headless Chromium)",
    "curl": "needs a running `main.py serve`; covered by tests/test_serve*.py",
    "printf": "builds a request for a running `main.py serve` (then curl); covered by "
              "tests/test_serve.py's translate_bytes tests",
    "env": "the two-machine multi-worker example (TF_CONFIG names host0 and host1, and "
           "each waits for the other); tests/test_distribute.py runs the same mode as two "
           "workers on localhost",
    "python tools/faults.py": "about 30 launches of main.py (tens of minutes); "
                              "tests/test_faults.py runs the same code with 3 faults",
    "mkdir -p runs/ferplus_long/checkpoints": "with the cp commands after it, hands "
        "stage 1's step-3000 checkpoint to stage 2 of the shipped recipe; the shortened "
        "stage 1 here stops at step 2, so stage 2 runs from a fresh run dir instead",
    "cp": "as the mkdir above (the README copies files only there)",
    "python tools/make_bad_inputs.py": "rewrites tests/data/bad_inputs in the checkout; "
                                       "tests/test_bad_inputs.py runs it into a temporary "
                                       "directory and compares",
}

# Appended to every `main.py <mode>` command: a few seconds each instead of hours.
SHORTEN = {
    "train": ["--max_steps=2", "--epochs=1", "--batch_size=4", "--synthetic_identities=16",
              "--g_conv_dim=8", "--g_repeat_num=1", "--d_conv_dim=8",
              "--checkpoint_every=0", "--sample_every=0", "--log_every=1",
              "--max_minutes=0", "--precision=float32", "--jit_compile=false"],
    "train_classifier": ["--epochs=1", "--width=4", "--batch_size=8", "--max_minutes=0",
                         "--synthetic_identities=16"],
    "evaluate": ["--eval_identities=8", "--eval_faces=8"],
    # On two dozen random faces no G meets issue 21's aims (--rule=aims would rightly stop
    # with its error line, which test_calibrate checks): loosened, it runs to its generator.
    # The shortened recipe stops at step 2: its newest checkpoint stands for step 6,000.
    "calibrate": ["--min_ssim=0", "--min_pair_accuracy=0", "--max_fd_ratio=1e9",
                  "--min_accuracy_vs_real=0", "--checkpoint=latest"],
    "export": ["--representative_count=16"],
    "translate": [],
    "benchmark": ["--bench_configs=demo", "--bench_precisions=float32", "--bench_steps=2"],
}
# Which alternative of `--flag=a|b|c` an optional part runs with.
PICK = {"--quantize": "int8"}  # the one that calibrates on --representative_data
# Commands that need an extra; the README must name it in the command's block or the
# paragraph just before it.
NEEDS_EXTRA = {"examples/run_tflite.py": "mobile", "examples/edit_photo_tflite.py": "mobile",
               "--format=tflite": "mobile", "--grpc": "serving"}
TIMEOUT_S = 600


# ---------------------------------------------------------------------------------------
# Parsing.


def shell_blocks(text):
  """(block text, the paragraph just before it) for each ```sh / ```bash block."""
  blocks = []
  for m in re.finditer(r"^```(?:sh|bash|shell|console)[ \t]*\n(.*?)^```", text,
                       re.M | re.S):
    before = text[:m.start()].rstrip().rsplit("\n\n", 1)[-1]
    blocks.append((m.group(1), before))
  return blocks


def split_commands(block):
  """A block -> [(text as written, tokens)]: `\\` lines joined, comments dropped, `&&`
  chains split."""
  commands, logical = [], ""
  for line in block.splitlines():
    if line.rstrip().endswith("\\"):
      logical += line.rstrip()[:-1].rstrip() + " "
      continue
    logical = re.sub(r"(^|\s)#.*$", "", logical + line).strip()
    for part in logical.split("&&"):
      if part.strip():
        commands.append((" ".join(part.split()), shlex.split(part)))
    logical = ""
  return commands


def readme_commands():
  """[(text, tokens, block, paragraph before)] in README order."""
  with open(README, encoding="utf-8") as f:
    text = f.read()
  return [(command, tokens, block, before) for block, before in shell_blocks(text)
          for command, tokens in split_commands(block)]


COMMANDS = readme_commands()


def _normalised(tokens):
  """`.venv/bin/python` and `python3` -> `python` (the text NOT_RUN keys use)."""
  return ["python" if tokens[0] in PYTHONS else tokens[0], *tokens[1:]]


def not_run_reason(tokens):
  text = " ".join(_normalised(tokens))
  for prefix, reason in NOT_RUN.items():
    if text == prefix or text.startswith(prefix + " "):
      return reason
  return None


def _variants(args):
  """`[--a=x|y --b=z]` optional parts -> [without them, with them (one alternative)]."""
  without, with_, depth = [], [], 0
  for token in args:
    opening, closing = token.startswith("["), token.endswith("]")
    core = token[1 if opening else 0:len(token) - (1 if closing else 0)]
    depth += opening
    if "|" in core:
      name, _, choices = core.partition("=")
      options = choices.split("|")
      core = f"{name}={PICK.get(name) if PICK.get(name) in options else options[0]}"
    if depth:
      with_.append(core)
    else:
      without.append(core)
      with_.append(core)
    depth -= closing
  return [without] if without == with_ else [without, with_]


def plan(tokens):
  """The argv lists a README command runs as here, or None when no rule covers it."""
  tokens = _normalised(tokens)
  if tokens[0] != "python" or len(tokens) < 2:
    return None
  script, args = tokens[1], tokens[2:]
  if script in ("examples/run_tflite.py", "examples/edit_photo_tflite.py"):
    extra = []
  elif script == "tools/augment_experiment.py":  # one seed, two steps per arm
    extra = [*SHORTEN["train_classifier"], "--seeds=0", "--epochs=1", "--steps_per_epoch=2"]
  elif script == "main.py":
    words = [a for a in args if not a.startswith("-")]
    mode = words[0] if words else "train"
    if mode not in SHORTEN:
      return None
    extra = SHORTEN[mode]
  else:
    return None
  return [[sys.executable, script, *variant, *extra] for variant in _variants(args)]


# ---------------------------------------------------------------------------------------
# The scratch directory.


def _fer2013_csv(path, rows_per_class=6, seed=0):
  """A small csv in FER2013's format: every emotion, Training and PublicTest rows."""
  rng = np.random.default_rng(seed)
  lines = ["emotion,pixels,Usage"]
  for usage in ("Training", "PublicTest", "PrivateTest"):
    for emotion in range(7):
      for _ in range(rows_per_class):
        coarse = rng.uniform(0, 255, (6, 6))
        face = cv2.resize(coarse, (48, 48), interpolation=cv2.INTER_CUBIC)
        pixels = np.clip(face, 0, 255).astype(np.uint8).ravel()
        lines.append(f"{emotion},{' '.join(map(str, pixels))},{usage}")
  with open(path, "w") as f:
    f.write("\n".join(lines) + "\n")
  # Its FER+ votes in Microsoft's fer2013new.csv layout, beside it: 7 of 10 taggers agree
  # with the csv's own label, 3 say neutral (FER+ columns, FER2013 label order).
  column = [4, 5, 6, 1, 3, 2, 0]            # Angry -> anger, ..., Neutral -> neutral
  votes = ["Usage,Image name,neutral,happiness,surprise,sadness,anger,disgust,fear,"
           "contempt,unknown,NF"]
  for i, line in enumerate(lines[1:]):
    counts = [3] + [0] * 9
    counts[column[int(line.split(",", 1)[0])]] += 7
    votes.append(f"{line.rsplit(',', 1)[1]},fer{i:07d}.png,{','.join(map(str, counts))}")
  with open(os.path.join(os.path.dirname(path), "fer2013new.csv"), "w") as f:
    f.write("\n".join(votes) + "\n")


def _prepare(workdir):
  from skimage import data as skdata  # pylint: disable=g-import-not-at-top
  shutil.copy(os.path.join(REPO, "main.py"), workdir)
  for folder in ("flags", "examples", "tools"):
    shutil.copytree(os.path.join(REPO, folder), os.path.join(workdir, folder))
  os.makedirs(os.path.join(workdir, "data"))
  _fer2013_csv(os.path.join(workdir, "data", "fer2013.csv"))
  photo = cv2.cvtColor(skdata.astronaut(), cv2.COLOR_RGB2BGR)
  face = cv2.resize(photo[40:240, 130:360], (120, 120), interpolation=cv2.INTER_AREA)
  os.makedirs(os.path.join(workdir, "photos"))
  for name, image in (("face.png", face), ("face.jpg", face), ("me.jpg", photo),
                      ("photos/astronaut.png", photo)):
    cv2.imwrite(os.path.join(workdir, name), image)


def _env():
  return {**os.environ, "PYTHONPATH": REPO, "TF_CPP_MIN_LOG_LEVEL": "2",
          "CUDA_VISIBLE_DEVICES": ""}


class Runner:
  """Runs the README's commands in order, each once, in one scratch directory.

  One exception to the order: a script (not main.py) whose every path argument is one of
  the prepared inputs (so it cannot need an earlier command's output) starts at the first
  run() as a subprocess beside the main.py commands before it; its result is collected
  in its turn. It spends most of its time in a fresh interpreter's imports and its own
  training, which would otherwise leave a core idle while main.py commands run.
  """

  def __init__(self, workdir, main_py):
    self.workdir = workdir
    self.main_py = main_py  # conftest.py: `python main.py ...` without a TF import each
    self.results = {}  # index -> None (ran fine) or a failure message
    self.early = None  # index -> (Popen, stdout path, stderr path, start time)

  def _reads_only_prepared_inputs(self, argv):
    for arg in argv[2:]:
      if not arg.startswith("--") or "=" not in arg:
        return False
      for value in arg.split("=", 1)[1].split(","):
        looks_like_a_path = "/" in value or re.search(r"\.[A-Za-z]\w*$", value)
        if looks_like_a_path and not os.path.exists(os.path.join(self.workdir, value)):
          return False
    return True

  def _start_early(self):
    self.early = {}
    for i, (_, tokens, _, _) in enumerate(COMMANDS):
      argvs = plan(tokens)
      if (argvs and len(argvs) == 1 and argvs[0][1] != "main.py"
          and not_run_reason(tokens) is None and self._reads_only_prepared_inputs(argvs[0])):
        out, err = (os.path.join(self.workdir, f".early-{i}.{n}") for n in ("out", "err"))
        with open(out, "w") as stdout, open(err, "w") as stderr:
          proc = subprocess.Popen(argvs[0], cwd=self.workdir, env=_env(), stdout=stdout,
                                  stderr=stderr, text=True)
        self.early[i] = (proc, out, err, time.monotonic())

  def _early_result(self, index, argv):
    proc, out, err, started = self.early.pop(index)
    try:
      proc.wait(timeout=max(1.0, TIMEOUT_S - (time.monotonic() - started)))
    except subprocess.TimeoutExpired:
      proc.kill()
      proc.wait()
      raise
    with open(out) as stdout, open(err) as stderr:
      return subprocess.CompletedProcess(argv, proc.returncode, stdout.read(), stderr.read())

  def close(self):
    for proc, _, _, _ in (self.early or {}).values():
      proc.kill()
      proc.wait()

  def _run_one(self, index):
    text, tokens, _, _ = COMMANDS[index]
    for argv in plan(tokens):
      shown = shlex.join([tokens[0], *argv[1:]])
      try:
        if index in self.early:
          result = self._early_result(index, argv)
        elif argv[1] == "main.py":
          result = self.main_py(*argv[2:], cwd=self.workdir, timeout=TIMEOUT_S)
        else:
          result = subprocess.run(argv, cwd=self.workdir, env=_env(), capture_output=True,
                                  text=True, timeout=TIMEOUT_S)
      except subprocess.TimeoutExpired:
        return f"README command timed out after {TIMEOUT_S} s:\n  {text}\nran as:\n  {shown}"
      if result.returncode != 0 or "Traceback" in result.stderr:
        return (f"README command failed (exit {result.returncode}):\n  {text}\n"
                f"ran as (in {self.workdir}):\n  {shown}\n--- output (tail) ---\n"
                f"{(result.stdout + result.stderr)[-4000:]}")
    return None

  def run(self, index):
    """Runs every runnable command up to `index` not yet run; returns index's failure."""
    if self.early is None:
      self._start_early()
    for i in range(index + 1):
      if i not in self.results and plan(COMMANDS[i][1]) is not None:
        self.results[i] = self._run_one(i)
    earlier = [COMMANDS[i][0] for i in range(index) if self.results.get(i)]
    failure = self.results[index]
    if failure and earlier:
      failure += "\n(earlier README commands failed too: " + "; ".join(earlier) + ")"
    return failure


@pytest.fixture(scope="module")
def runner(tmp_path_factory, main_py):
  workdir = str(tmp_path_factory.mktemp("readme"))
  _prepare(workdir)
  readme_runner = Runner(workdir, main_py)
  yield readme_runner
  readme_runner.close()


# ---------------------------------------------------------------------------------------
# Tests.


def test_readme_has_commands():
  assert len(COMMANDS) >= 5, "no ```sh blocks found in README.md"


def test_every_readme_command_is_run_or_listed():
  unhandled = [text for text, tokens, _, _ in COMMANDS
               if plan(tokens) is None and not_run_reason(tokens) is None]
  assert not unhandled, (
      "README.md commands that tests/test_readme.py neither runs nor lists in NOT_RUN "
      "(add a rule in plan()/SHORTEN, or a NOT_RUN entry with the reason):\n  " +
      "\n  ".join(unhandled))


def test_not_run_entries_are_still_in_the_readme():
  used = {prefix for prefix in NOT_RUN for _, tokens, _, _ in COMMANDS
          if " ".join(_normalised(tokens)).startswith(prefix)}
  assert used == set(NOT_RUN), f"stale NOT_RUN entries: {set(NOT_RUN) - used}"


@functools.lru_cache
def _defined_extras():
  with open(os.path.join(REPO, "pyproject.toml")) as f:
    section = f.read().split("[project.optional-dependencies]", 1)[1].split("\n[", 1)[0]
  return set(re.findall(r"^([A-Za-z0-9_-]+)\s*=", section, re.M))


def test_readme_extras_exist():
  with open(README, encoding="utf-8") as f:
    named = set(re.findall(r'pip install -e "\.\[([A-Za-z0-9_,-]+)\]"', f.read()))
  named = {extra for group in named for extra in group.split(",")}
  assert named, "the README names no extra"
  assert named <= _defined_extras(), f"extras not in pyproject.toml: {named - _defined_extras()}"


@pytest.mark.parametrize("text,block,before", [
    pytest.param(text, block, before, id=text[:70])
    for text, _, block, before in COMMANDS
    if any(key in text for key in NEEDS_EXTRA)])
def test_commands_that_need_an_extra_name_it(text, block, before):
  for key, extra in NEEDS_EXTRA.items():
    if key in text:
      hint = f'pip install -e ".[{extra}]"'
      assert hint in block or hint in before, (
          f"README: say {hint} next to this command:\n  {text}")


@pytest.mark.parametrize("index", [
    pytest.param(i, id=text[:70]) for i, (text, tokens, _, _) in enumerate(COMMANDS)
    if plan(tokens) is not None])
def test_readme_command_runs(runner, index):
  failure = runner.run(index)
  if failure:
    pytest.fail(failure, pytrace=False)
