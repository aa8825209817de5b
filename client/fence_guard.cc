#include "client/fence_guard.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"

namespace tally::client {

namespace {

absl::Status Errno(const std::string& what) {
  return absl::InternalError(absl::StrCat(what, ": ", std::strerror(errno)));
}

// An exclusive flock of `path` for the life of the object.
class FileLock {
 public:
  explicit FileLock(const std::string& path)
      : fd_(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644)) {
    if (fd_ >= 0 && ::flock(fd_, LOCK_EX) != 0) {
      ::close(fd_);
      fd_ = -1;
    }
  }
  ~FileLock() {
    if (fd_ >= 0) ::close(fd_);  // releases the lock
  }
  bool ok() const { return fd_ >= 0; }

 private:
  int fd_;
};

absl::Status SyncPath(const std::string& path, int flags) {
  int fd = ::open(path.c_str(), flags | O_CLOEXEC);
  if (fd < 0) return Errno(absl::StrCat("open ", path));
  const int rc = ::fsync(fd);
  ::close(fd);
  return rc == 0 ? absl::OkStatus() : Errno(absl::StrCat("fsync ", path));
}

// Threads of one process: flock locks are per open file description, and
// two threads opening the lock file would each get one; this keeps them
// in line too.
std::mutex& ProcessMutex() {
  static std::mutex mu;
  return mu;
}

}  // namespace

absl::StatusOr<std::unique_ptr<FenceGuard>> FenceGuard::Open(std::string path) {
  std::unique_ptr<FenceGuard> g(new FenceGuard(std::move(path)));
  std::lock_guard<std::mutex> in_process(ProcessMutex());
  FileLock lock(g->path_ + ".lock");
  if (!lock.ok()) return Errno(absl::StrCat("lock ", g->path_, ".lock"));
  if (!std::filesystem::exists(g->path_)) {
    if (absl::Status st = g->Store(0); !st.ok()) return st;
  }
  if (absl::StatusOr<uint64_t> h = g->Highest(); !h.ok()) return h.status();
  return g;
}

absl::StatusOr<uint64_t> FenceGuard::Highest() const {
  std::ifstream in(path_);
  if (!in) return Errno(absl::StrCat("read ", path_));
  std::string text((std::istreambuf_iterator<char>(in)),
                   std::istreambuf_iterator<char>());
  uint64_t token = 0;
  if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(text), &token)) {
    return absl::DataLossError(
        absl::StrCat(path_, " does not hold a fence token: \"", text, "\""));
  }
  return token;
}

absl::Status FenceGuard::Store(uint64_t token) const {
  const std::string tmp = path_ + ".tmp";
  {
    int fd =
        ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return Errno(absl::StrCat("open ", tmp));
    const std::string text = absl::StrCat(token, "\n");
    const bool written = ::write(fd, text.data(), text.size()) ==
                             static_cast<ssize_t>(text.size()) &&
                         ::fsync(fd) == 0;
    ::close(fd);
    if (!written) return Errno(absl::StrCat("write ", tmp));
  }
  if (::rename(tmp.c_str(), path_.c_str()) != 0) {
    return Errno(absl::StrCat("rename ", tmp, " to ", path_));
  }
  std::string dir = std::filesystem::path(path_).parent_path().string();
  return SyncPath(dir.empty() ? "." : dir, O_RDONLY | O_DIRECTORY);
}

absl::Status FenceGuard::Admit(uint64_t token) {
  std::lock_guard<std::mutex> in_process(ProcessMutex());
  FileLock lock(path_ + ".lock");
  if (!lock.ok()) return Errno(absl::StrCat("lock ", path_, ".lock"));
  absl::StatusOr<uint64_t> highest = Highest();
  if (!highest.ok()) return highest.status();
  if (token < *highest) {
    return absl::FailedPreconditionError(
        absl::StrCat("fence token ", token, " is stale: token ", *highest,
                     " was admitted (", path_, ")"));
  }
  if (token == *highest) return absl::OkStatus();
  return Store(token);
}

}  // namespace tally::client
