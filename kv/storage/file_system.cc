#include "kv/storage/file_system.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "util/status_macros.h"

namespace tally::kv::storage {

namespace {

absl::Status Errno(int err, const std::string& what, const std::string& path) {
  const std::string message =
      absl::StrCat(what, " ", path, ": ", std::strerror(err));
  switch (err) {
    case ENOENT:
      return absl::NotFoundError(message);
    case ENOSPC:
    case EDQUOT:
      return absl::ResourceExhaustedError(message);
    case EACCES:
    case EPERM:
      return absl::PermissionDeniedError(message);
    default:
      return absl::InternalError(message);
  }
}

class PosixFile final : public WritableFile {
 public:
  PosixFile(std::string path, int fd, uint64_t offset)
      : path_(std::move(path)), fd_(fd), offset_(offset) {}
  ~PosixFile() override { ::close(fd_); }

  absl::Status Append(std::string_view data) override {
    while (!data.empty()) {
      const ssize_t n = ::pwrite(fd_, data.data(), data.size(), offset_);
      if (n < 0) {
        if (errno == EINTR) continue;
        return Errno(errno, "writing", path_);
      }
      offset_ += n;
      data.remove_prefix(n);
    }
    return absl::OkStatus();
  }

  absl::Status Sync() override {
    if (::fdatasync(fd_) != 0) return Errno(errno, "syncing", path_);
    return absl::OkStatus();
  }

  uint64_t offset() const override { return offset_; }

 private:
  const std::string path_;
  const int fd_;
  uint64_t offset_;
};

class PosixFs final : public FileSystem {
 public:
  absl::Status CreateDir(const std::string& dir) override {
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
    if (ec) return Errno(ec.value(), "creating", dir);
    return absl::OkStatus();
  }

  absl::StatusOr<std::vector<std::string>> List(
      const std::string& dir) override {
    DIR* d = ::opendir(dir.c_str());
    if (d == nullptr) return Errno(errno, "listing", dir);
    std::vector<std::string> names;
    while (const dirent* e = ::readdir(d)) {
      if (e->d_type == DT_REG) names.emplace_back(e->d_name);
    }
    ::closedir(d);
    return names;
  }

  absl::StatusOr<std::string> Read(const std::string& path) override {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return Errno(errno, "opening", path);
    struct stat st;
    std::string out;
    if (::fstat(fd, &st) == 0) out.reserve(st.st_size);
    char buf[1 << 16];
    for (;;) {
      const ssize_t n = ::read(fd, buf, sizeof(buf));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) {
        const int err = errno;
        ::close(fd);
        return Errno(err, "reading", path);
      }
      if (n == 0) break;
      out.append(buf, n);
    }
    ::close(fd);
    return out;
  }

  absl::StatusOr<std::unique_ptr<WritableFile>> OpenAt(
      const std::string& path, uint64_t offset, uint64_t preallocate) override {
    const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) return Errno(errno, "opening", path);
    auto fail = [&](const char* what) {
      const int err = errno;
      ::close(fd);
      return Errno(err, what, path);
    };
    if (::ftruncate(fd, offset) != 0) return fail("cutting");
    if (preallocate > offset &&
        ::fallocate(fd, 0, offset, preallocate - offset) != 0 &&
        errno != EOPNOTSUPP) {
      return fail("preallocating");
    }
    return std::unique_ptr<WritableFile>(new PosixFile(path, fd, offset));
  }

  absl::Status Remove(const std::string& path) override {
    if (::unlink(path.c_str()) != 0) return Errno(errno, "removing", path);
    return absl::OkStatus();
  }

  absl::Status Rename(const std::string& from, const std::string& to) override {
    if (::rename(from.c_str(), to.c_str()) != 0) {
      return Errno(errno, absl::StrCat("renaming to ", to, ":"), from);
    }
    return absl::OkStatus();
  }

  absl::Status SyncDir(const std::string& dir) override {
    const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return Errno(errno, "opening", dir);
    const int rc = ::fsync(fd);
    const int err = errno;
    ::close(fd);
    if (rc != 0) return Errno(err, "syncing", dir);
    return absl::OkStatus();
  }
};

}  // namespace

FileSystem* PosixFileSystem() {
  static PosixFs* const fs = new PosixFs;
  return fs;
}

absl::Status WriteFileAtomically(FileSystem* fs, const std::string& dir,
                                 const std::string& name,
                                 std::string_view contents) {
  const std::string tmp = absl::StrCat(dir, "/", name, ".tmp");
  {
    ASSIGN_OR_RETURN(std::unique_ptr<WritableFile> f, fs->OpenAt(tmp, 0, 0));
    RETURN_IF_ERROR(f->Append(contents));
    RETURN_IF_ERROR(f->Sync());
  }
  RETURN_IF_ERROR(fs->Rename(tmp, absl::StrCat(dir, "/", name)));
  return fs->SyncDir(dir);
}

}  // namespace tally::kv::storage
