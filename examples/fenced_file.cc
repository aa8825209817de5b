// Guarding a resource outside the store with a fence token: appends a line
// to a file only if the lock's token is no older than any admitted before.
// Run under `kvctl lock`, which passes the token in TALLY_FENCE_TOKEN:
//
//   kvctl lock reports -- build/bin/fenced_file_example
//       /srv/report.fence /srv/report.txt "run at $(date)"   (one line)
//
// A holder paused past its lease that resumes after its successor wrote is
// turned away (exit 1), and the file shows only the successor's line.

#include <cstdlib>
#include <fstream>
#include <iostream>

#include "absl/strings/numbers.h"
#include "client/fence_guard.h"

int main(int argc, char** argv) {
  if (argc != 4) {
    std::cerr << "usage: fenced_file_example GUARD_FILE FILE LINE "
                 "(with TALLY_FENCE_TOKEN set, e.g. under kvctl lock)\n";
    return 2;
  }
  const char* token_text = std::getenv("TALLY_FENCE_TOKEN");
  uint64_t token = 0;
  if (token_text == nullptr || !absl::SimpleAtoi(token_text, &token)) {
    std::cerr << "fenced_file_example: TALLY_FENCE_TOKEN is not set to a "
                 "token: run it under `kvctl lock NAME -- ...`\n";
    return 2;
  }
  auto guard = tally::client::FenceGuard::Open(argv[1]);
  if (!guard.ok()) {
    std::cerr << "fenced_file_example: " << guard.status().message() << "\n";
    return 4;
  }
  if (absl::Status st = (*guard)->Admit(token); !st.ok()) {
    std::cerr << "fenced_file_example: refused: " << st.message() << "\n";
    return 1;
  }
  std::ofstream out(argv[2], std::ios::app);
  out << argv[3] << "\n";
  out.flush();
  if (!out) {
    std::cerr << "fenced_file_example: cannot write " << argv[2] << "\n";
    return 4;
  }
  return 0;
}
