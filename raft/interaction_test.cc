// Data-driven interaction tests. Each file in testdata/ is a script:
//
//   # a comment
//   command arg arg...
//   ----
//   the output the command must print
//   (a blank line ends the case)
//
// Every file runs on a fresh InteractionEnv. A mismatch prints the file,
// line, expected and actual output. With --rewrite, the files are rewritten
// with the actual output instead; review the diff before committing it.
//
// Usage: raft_interaction_test --testdata=DIR [--rewrite] [FILE...]

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "raft/interaction_env.h"

namespace fs = std::filesystem;

namespace tally::raft::testing {
namespace {

struct Case {
  int line = 0;         // of the command, 1-based
  std::string command;  // the command line as written
  std::string expected;
};

struct Script {
  // Text outside cases (comments, blank lines) is kept for rewriting, as
  // the prefix of the case it precedes; `trailer` follows the last case.
  std::vector<std::string> prefixes;
  std::vector<Case> cases;
  std::string trailer;
};

bool ParseScript(const std::string& path, Script* script, std::string* error) {
  std::ifstream in(path);
  if (!in) {
    *error = "cannot open " + path;
    return false;
  }
  std::vector<std::string> lines;
  for (std::string l; std::getline(in, l);) lines.push_back(l);
  std::string pending;
  for (size_t i = 0; i < lines.size();) {
    const std::string& l = lines[i];
    if (l.empty() || absl::StartsWith(l, "#")) {
      pending += l + "\n";
      ++i;
      continue;
    }
    Case c;
    c.line = static_cast<int>(i) + 1;
    c.command = l;
    if (i + 1 >= lines.size() || lines[i + 1] != "----") {
      *error =
          path + ":" + std::to_string(c.line) + ": expected ---- after command";
      return false;
    }
    i += 2;
    std::vector<std::string> out;
    while (i < lines.size() && !lines[i].empty()) out.push_back(lines[i++]);
    c.expected = absl::StrJoin(out, "\n");
    script->prefixes.push_back(std::move(pending));
    pending.clear();
    script->cases.push_back(std::move(c));
  }
  script->trailer = pending;
  return true;
}

// Runs one file; returns the number of failed cases. Fills `actual` with
// each case's output.
int RunScript(const std::string& path, const Script& script, bool report,
              std::vector<std::string>* actual) {
  InteractionEnv env;
  int failed = 0;
  for (const Case& c : script.cases) {
    std::vector<std::string> words =
        absl::StrSplit(c.command, ' ', absl::SkipEmpty());
    std::string cmd = words.front();
    words.erase(words.begin());
    std::string out = env.Run(cmd, words);
    actual->push_back(out);
    if (out != c.expected) {
      ++failed;
      if (!report) continue;
      std::cerr << path << ":" << c.line << ": " << c.command
                << "\n--- expected\n"
                << c.expected << "\n--- actual\n"
                << out << "\n\n";
    }
  }
  return failed;
}

void Rewrite(const std::string& path, const Script& script,
             const std::vector<std::string>& actual) {
  std::ofstream out(path, std::ios::trunc);
  for (size_t i = 0; i < script.cases.size(); ++i) {
    out << script.prefixes[i] << script.cases[i].command << "\n----\n"
        << actual[i] << "\n";
    if (i + 1 < script.cases.size() && script.prefixes[i + 1].empty()) {
      out << "\n";
    }
  }
  out << script.trailer;
}

int Main(int argc, char** argv) {
  std::string dir;
  bool rewrite = false;
  std::vector<std::string> only;
  for (int i = 1; i < argc; ++i) {
    absl::string_view a = argv[i];
    if (absl::ConsumePrefix(&a, "--testdata=")) {
      dir = std::string(a);
    } else if (a == "--rewrite") {
      rewrite = true;
    } else {
      only.push_back(std::string(a));
    }
  }
  if (dir.empty()) {
    std::cerr << "usage: raft_interaction_test --testdata=DIR [--rewrite] "
                 "[FILE...]\n";
    return 2;
  }
  std::vector<std::string> files;
  for (const auto& entry : fs::directory_iterator(dir)) {
    if (entry.path().extension() != ".txt") continue;
    const std::string name = entry.path().filename().string();
    if (only.empty() ||
        std::find(only.begin(), only.end(), name) != only.end()) {
      files.push_back(entry.path().string());
    }
  }
  std::sort(files.begin(), files.end());
  int passed = 0, failed = 0;
  for (const std::string& f : files) {
    Script script;
    std::string error;
    if (!ParseScript(f, &script, &error)) {
      std::cerr << error << "\n";
      ++failed;
      continue;
    }
    std::vector<std::string> actual;
    const int bad = RunScript(f, script, /*report=*/!rewrite, &actual);
    if (rewrite) {
      Rewrite(f, script, actual);
      std::cout << "rewrote " << f << "\n";
    }
    (bad == 0 || rewrite) ? ++passed : ++failed;
  }
  std::cout << "interaction: " << passed << " passed, " << failed
            << " failed\n";
  return failed == 0 && !files.empty() ? 0 : 1;
}

}  // namespace
}  // namespace tally::raft::testing

int main(int argc, char** argv) {
  return tally::raft::testing::Main(argc, argv);
}
