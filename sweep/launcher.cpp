#include "sweep/launcher.h"

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <sstream>

#include "core/error.h"
#include "core/fs.h"

namespace longctx {
namespace fs = std::filesystem;

int run_logged(const std::vector<std::string>& argv, const std::string& log_path) {
  LONGCTX_CHECK(!argv.empty(), "run_logged needs a command");
  const int log = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (log < 0) throw Error(str("cannot write '", log_path, "': ", std::strerror(errno)));
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  std::fflush(stdout);  // or the child would inherit, and print again, what is buffered
  std::fflush(stderr);
  const pid_t pid = ::fork();
  if (pid < 0) {
    ::close(log);
    throw Error(str("cannot start '", argv[0], "': fork failed: ", std::strerror(errno)));
  }
  if (pid == 0) {  // the child: only async-signal-safe calls until exec
    const int null = ::open("/dev/null", O_RDONLY);
    if (null >= 0) ::dup2(null, 0);
    ::dup2(log, 1);
    ::dup2(log, 2);
    ::execvp(args[0], args.data());
    const char* why = std::strerror(errno);
    const char* msg = "cannot start '";
    (void)!::write(2, msg, std::strlen(msg));
    (void)!::write(2, args[0], std::strlen(args[0]));
    (void)!::write(2, "': ", 3);
    (void)!::write(2, why, std::strlen(why));
    (void)!::write(2, "\n", 1);
    ::_exit(127);
  }
  ::close(log);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) throw Error(str("waiting for '", argv[0], "': ", std::strerror(errno)));
  }
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  return 128 + WTERMSIG(status);
}

std::string self_executable() {
  std::error_code ec;
  const fs::path p = fs::read_symlink("/proc/self/exe", ec);
  if (ec) throw Error(str("cannot find this executable's path (/proc/self/exe): ", ec.message()));
  return p.string();
}

std::string last_line(const std::string& path) {
  std::error_code ec;
  if (!fs::exists(path, ec)) return "";
  std::istringstream in(read_file(path));
  std::string last;
  for (std::string line; std::getline(in, line);) {
    const size_t a = line.find_first_not_of(" \t\r");
    if (a == std::string::npos) continue;
    last = line.substr(a, line.find_last_not_of(" \t\r") + 1 - a);
  }
  if (last.size() > 300) last = last.substr(0, 297) + "...";
  return last;
}

std::optional<std::string> find_python(std::string* tried) {
  std::vector<std::string> candidates;
  if (const char* env = std::getenv("LONGCTX_PYTHON"); env && *env) candidates.push_back(env);
  candidates.push_back("/usr/bin/python3");
  candidates.push_back("python3");
  std::string list;
  for (const std::string& py : candidates) {
    list += (list.empty() ? "" : ", ") + py;
    if (run_logged({py, "-c", "import matplotlib"}, "/dev/null") == 0) return py;
  }
  if (tried) *tried = list;
  return std::nullopt;
}

std::string find_plot_script() {
  std::error_code ec;
  const fs::path exe_dir = fs::path(self_executable()).parent_path();
  for (const fs::path& dir : {exe_dir / "..", exe_dir / ".." / "..", exe_dir}) {
    const fs::path script = (dir / "tools" / "plot.py").lexically_normal();
    if (fs::is_regular_file(script, ec)) return script.string();
  }
  return "";
}

PlotList make_plots(const std::string& out_dir) {
  PlotList plots;
  std::string tried;
  const std::optional<std::string> python = find_python(&tried);
  if (!python) {
    plots.note = str("Plots skipped: no Python with matplotlib (tried ", tried,
                     "; set LONGCTX_PYTHON to one).");
    return plots;
  }
  const std::string script = find_plot_script();
  if (script.empty()) {
    plots.note = "Plots skipped: tools/plot.py was not found next to the longctx executable.";
    return plots;
  }
  const std::string dir = out_dir + "/plots";
  make_dirs(dir);
  // Plots of an earlier sweep that this one would not draw (a grid since removed) must go.
  for (const auto& entry : fs::directory_iterator(dir))
    if (entry.path().extension() == ".png") fs::remove(entry.path());
  const std::string log = dir + "/plot.log";
  const int code =
      run_logged({*python, script, "sweep", "--out-dir", dir, out_dir + "/report.jsonl"}, log);
  // plot.py prints "wrote PATH: WHAT" for each plot.
  std::istringstream in(read_file(log));
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("wrote ", 0) != 0) continue;
    const size_t colon = line.find(": ", 6);
    const std::string path = line.substr(6, colon == std::string::npos ? colon : colon - 6);
    const std::string what = colon == std::string::npos ? "" : line.substr(colon + 2);
    const fs::path rel =
        fs::path(path).lexically_normal().lexically_relative(fs::path(out_dir).lexically_normal());
    plots.files.push_back({rel.empty() ? path : rel.string(), what});
  }
  if (code != 0)
    plots.note = str("Plotting failed (exit ", code, "): ", last_line(log), " (see `", log, "`).");
  else if (plots.files.empty())
    plots.note = "No plots: the runs logged nothing to plot.";
  return plots;
}

}  // namespace longctx
