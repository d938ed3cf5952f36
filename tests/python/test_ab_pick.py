"""scripts/micro/ab_pick, the keep rule of a candidate's device call, on A/B tables in scripts/ab-bench's
format (no GPU): the rows it takes (kernel, cap, batch), the mean and worst-row tests, --better-than against
another tree such as an A/A control, and exit status 2 for a table without such rows."""

import os
import subprocess

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(REPO, "scripts", "micro", "ab_pick")

# Three trees, as `scripts/ab-bench run` prints them: the candidate `cand` gains 1 % on the sm90-h64 rows
# from b = 32, 3 % on the b = 8 row and loses 2 % on one mma99-h32 row; `control` (base's sources again)
# is +0.5 % on every sm90-h64 row.
TABLE = """\
# ab-bench: 3 rounds, trees base=abc cand=abc+x.patch control=abc, smla-bench --check --backend cuda
# per tree: median time_us over the rounds [kernel]; change against the first tree
== A/B, uncapped
flash-c4 cuda b=8 h=64 s_q=1 P=256 cap=none             base: 16.80 [mma99-h32] | cand: 17.14 [mma99-h32] (+2.0 %) | control: 16.80 [mma99-h32] (+0.0 %)
pro-c4 cuda b=8 h=128 s_q=1 P=256 cap=none              base: 24.80 [sm90-h64] | cand: 24.06 [sm90-h64] (-3.0 %) | control: 24.92 [sm90-h64] (+0.5 %)
flash-c4 cuda b=32 h=64 s_q=1 P=256 cap=none            base: 27.10 [sm90-h64] | cand: 26.83 [sm90-h64] (-1.0 %) | control: 27.24 [sm90-h64] (+0.5 %)
pro-c4 cuda b=64 h=128 s_q=1 P=256 cap=none             base: 62.75 [sm90-h64] | cand: 62.12 [sm90-h64] (-1.0 %) | control: 63.06 [sm90-h64] (+0.5 %)
pro-c4 cuda b=64 h=128 s_q=1 P=256 cap=101376           base: 128.74 [mma99-h32] | cand: 128.74 [mma99-h32] (+0.0 %) | control: 128.74 [mma99-h32] (+0.0 %)
"""


def pick(tmp_path, *args):
    table = tmp_path / "ab.txt"
    table.write_text(TABLE)
    result = subprocess.run([SCRIPT, str(table), *args], capture_output=True, text=True)
    return result.returncode, result.stdout.strip()


def rule(min_batch, mean, worst, cap="none"):
    """ab_pick's options for the sm90-h64 rows at cap `cap` and b >= min_batch."""
    return ["--kernel", "sm90-h64", "--cap", cap, "--min-batch", str(min_batch), "--mean", str(mean),
            "--worst", str(worst)]


def test_mean_over_the_rows_of_kernel_cap_and_batch(tmp_path):
    code, line = pick(tmp_path, *rule(32, -0.8, 2.5), "cand")
    assert code == 0
    assert line == ("keep cand: mean -1.00 % over 2 rows, worst row +2.0 % "
                    "(flash-c4 cuda b=8 h=64 s_q=1 P=256 cap=none)")
    code, line = pick(tmp_path, *rule(8, -1.5, 2.5), "cand")
    assert code == 0 and line.startswith("keep cand: mean -1.67 % over 3 rows")
    code, line = pick(tmp_path, *rule(32, -1.5, 2.5), "cand")
    assert code == 1 and line.endswith("the rule asks a mean <= -1.50 %")


def test_the_worst_row_of_the_whole_table_counts(tmp_path):
    code, line = pick(tmp_path, *rule(32, -0.5, 1.5), "cand")
    assert code == 1
    assert line.endswith("the rule allows no row above +1.5 %")


def test_better_than_an_aa_control(tmp_path):
    code, line = pick(tmp_path, *rule(32, -0.5, 2.5), "--better-than", "control", "--by", "1.4", "cand")
    assert code == 0 and line.startswith("keep cand")
    code, line = pick(tmp_path, *rule(32, -0.5, 2.5), "--better-than", "control", "--by", "1.6", "cand")
    assert code == 1 and line.endswith("not 1.6 points better than control (+0.50 %)")


def test_a_table_without_the_rows_is_an_error(tmp_path):
    code, line = pick(tmp_path, *rule(8, -0.5, 1.5, cap="101376"), "cand")
    assert code == 2
    assert line.startswith("drop cand: no sm90-h64 rows at cap=101376, b >= 8")


# The same candidate once smla-bench names mma99-h32's build: the capped rows of its two builds.
BUILD_TABLE = """\
# per tree: median time_us over the rounds [kernel/build]; change against the first tree
flash-swa cuda b=64 h=64 s_q=1 P=256 cap=101376         base: 20.00 [mma99-h32/staging] | cand: 20.40 [mma99-h32/staging] (+2.0 %)
flash-c4 cuda b=64 h=64 s_q=1 P=256 cap=101376          base: 40.00 [mma99-h32/registers] | cand: 39.20 [mma99-h32/registers] (-2.0 %)
pro-c4 cuda b=64 h=128 s_q=1 P=256 cap=101376           base: 100.00 [mma99-h32/registers] | cand: 97.00 [mma99-h32/registers] (-3.0 %)
"""


def test_a_kernel_takes_every_build_and_a_build_only_itself(tmp_path):
    table = tmp_path / "ab.txt"
    table.write_text(BUILD_TABLE)

    def pick_build(kernel):
        result = subprocess.run([SCRIPT, str(table), "--kernel", kernel, "--cap", "101376", "--mean", "0",
                                 "--worst", "5", "cand"], capture_output=True, text=True)
        return result.returncode, result.stdout.strip()

    assert pick_build("mma99-h32") == (0, "keep cand: mean -1.00 % over 3 rows, worst row +2.0 % "
                                          "(flash-swa cuda b=64 h=64 s_q=1 P=256 cap=101376)")
    code, line = pick_build("mma99-h32/registers")
    assert code == 0 and line.startswith("keep cand: mean -2.50 % over 2 rows")
    code, line = pick_build("mma99-h32/staging")
    assert code == 1 and line.startswith("drop cand: mean +2.00 % over 1 rows")
    code, line = pick_build("mma99-h3")
    assert code == 2
