// Child processes of a sweep: each training run (this binary, or mpirun around it) with its
// output in a log file, and tools/plot.py under the first Python that has matplotlib.
#pragma once
#include <optional>
#include <string>
#include <vector>

#include "sweep/report.h"

namespace longctx {

// Runs argv[0] (looked up on PATH) with stdout and stderr appended to `log_path` (created or
// truncated) and stdin from /dev/null; waits for it. Returns its exit status, 128 + the signal
// that ended it, or 127 when it could not start (the reason is then in the log).
int run_logged(const std::vector<std::string>& argv, const std::string& log_path);

// The path of the running executable (/proc/self/exe).
std::string self_executable();

// The last non-blank line of a text file (at most 300 characters), "" if none.
std::string last_line(const std::string& path);

// The first of $LONGCTX_PYTHON, /usr/bin/python3, python3 that can `import matplotlib`, or
// nullopt; *tried lists what was tried.
std::optional<std::string> find_python(std::string* tried);

// tools/plot.py next to the executable's build tree (EXE_DIR/../tools, EXE_DIR/../../tools,
// EXE_DIR/tools), or "" when none exists.
std::string find_plot_script();

// `plot.py sweep --out-dir OUT_DIR/plots OUT_DIR/report.jsonl`, its output in
// OUT_DIR/plots/plot.log. Never throws for a missing Python or a failing script: the returned
// note then says why there are no plots.
PlotList make_plots(const std::string& out_dir);

}  // namespace longctx
