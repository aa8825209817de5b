#include "cmd/kvctl/snapshot_file.h"

#include <fcntl.h>
#include <openssl/evp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"

namespace tally::kvctl {
namespace {

constexpr char kMagic[] = "tally-snapshot 1\n";
constexpr size_t kMagicSize = sizeof(kMagic) - 1;
constexpr size_t kTrailerSize = 7 + 64 + 1;  // "sha256 " hex "\n"
constexpr size_t kBlock = 1 << 20;

// The SHA-256 (hex) of `path`'s first `n` bytes, read a block at a time.
absl::StatusOr<std::string> Sha256Of(const std::string& path, uint64_t n) {
  std::ifstream in(path, std::ios::binary);
  if (!in)
    return absl::InvalidArgumentError(absl::StrCat("cannot read ", path));
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(),
                                                              EVP_MD_CTX_free);
  EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr);
  std::string block(kBlock, '\0');
  while (n > 0) {
    const size_t want = static_cast<size_t>(std::min<uint64_t>(n, kBlock));
    if (!in.read(block.data(), static_cast<std::streamsize>(want))) {
      return absl::DataLossError(
          absl::StrCat(path, " could not be read whole"));
    }
    EVP_DigestUpdate(ctx.get(), block.data(), want);
    n -= want;
  }
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_DigestFinal_ex(ctx.get(), md, &len);
  return absl::BytesToHexString(
      std::string(reinterpret_cast<const char*>(md), len));
}

}  // namespace

absl::StatusOr<std::unique_ptr<SnapshotWriter>> SnapshotWriter::Create(
    const std::string& path) {
  const std::string part = path + ".part";
  const int fd = ::open(part.c_str(), O_RDWR | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) {
    return absl::InvalidArgumentError(absl::StrCat("cannot write ", part));
  }
  std::unique_ptr<SnapshotWriter> w(new SnapshotWriter(path, fd));
  if (absl::Status st = w->Write(kMagic, kMagicSize); !st.ok()) return st;
  return w;
}

SnapshotWriter::SnapshotWriter(std::string path, int fd)
    : path_(std::move(path)), fd_(fd) {}

SnapshotWriter::~SnapshotWriter() {
  if (fd_ >= 0) ::close(fd_);
  if (!finished_) std::remove((path_ + ".part").c_str());
}

absl::Status SnapshotWriter::Write(const char* data, size_t n) {
  size_t done = 0;
  while (done < n) {
    const ssize_t w = ::write(fd_, data + done, n - done);
    if (w <= 0) {
      return absl::ResourceExhaustedError(
          absl::StrCat("cannot write ", path_, ".part (disk full?)"));
    }
    done += static_cast<size_t>(w);
  }
  size_ += n;
  return absl::OkStatus();
}

absl::Status SnapshotWriter::Append(const rpc::BackupChunk& chunk) {
  const std::string body = chunk.SerializeAsString();
  const uint32_t n = static_cast<uint32_t>(body.size());
  const char len[4] = {static_cast<char>(n >> 24), static_cast<char>(n >> 16),
                       static_cast<char>(n >> 8), static_cast<char>(n)};
  if (absl::Status st = Write(len, sizeof(len)); !st.ok()) return st;
  return Write(body.data(), body.size());
}

absl::Status SnapshotWriter::Truncate(uint64_t size) {
  if (::ftruncate(fd_, static_cast<off_t>(size)) != 0 ||
      ::lseek(fd_, static_cast<off_t>(size), SEEK_SET) < 0) {
    return absl::InternalError(
        absl::StrCat("cannot truncate ", path_, ".part"));
  }
  size_ = size;
  return absl::OkStatus();
}

absl::StatusOr<std::string> SnapshotWriter::Finish() {
  absl::StatusOr<std::string> sha = Sha256Of(path_ + ".part", size_);
  if (!sha.ok()) return sha.status();
  const std::string trailer = absl::StrCat("sha256 ", *sha, "\n");
  if (absl::Status st = Write(trailer.data(), trailer.size()); !st.ok()) {
    return st;
  }
  if (::fsync(fd_) != 0 ||
      std::rename((path_ + ".part").c_str(), path_.c_str()) != 0) {
    return absl::ResourceExhaustedError(
        absl::StrCat("cannot write ", path_, " (disk full?)"));
  }
  finished_ = true;
  return *sha;
}

absl::StatusOr<std::vector<SnapshotRange>> ReadSnapshot(
    const std::string& path,
    const std::function<absl::Status(const rpc::BackupChunk&)>& visit) {
  std::ifstream in(path, std::ios::binary);
  if (!in)
    return absl::InvalidArgumentError(absl::StrCat("cannot read ", path));
  std::string magic(kMagicSize, '\0');
  if (!in.read(magic.data(), kMagicSize) || magic != kMagic) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, " is not a Tally snapshot (kvctl snapshot save)"));
  }
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) {
    return absl::InvalidArgumentError(absl::StrCat("cannot read ", path));
  }
  const uint64_t size = static_cast<uint64_t>(st.st_size);
  std::string trailer(kTrailerSize, '\0');
  if (size < kMagicSize + kTrailerSize ||
      !in.seekg(static_cast<std::streamoff>(size - kTrailerSize)) ||
      !in.read(trailer.data(), kTrailerSize) ||
      !trailer.starts_with("sha256 ") || trailer.back() != '\n') {
    return absl::DataLossError(
        absl::StrCat(path, " is cut short: it has no checksum at its end"));
  }
  const uint64_t body_end = size - kTrailerSize;
  const std::string want = trailer.substr(7, 64);
  absl::StatusOr<std::string> got = Sha256Of(path, body_end);
  if (!got.ok()) return got.status();
  if (*got != want) {
    return absl::DataLossError(
        absl::StrCat(path, " is damaged: its SHA-256 is ", *got,
                     ", the file says ", absl::CHexEscape(want)));
  }
  std::vector<SnapshotRange> out;
  bool done = true;  // the last range's copy is whole
  in.seekg(static_cast<std::streamoff>(kMagicSize));
  std::string body;
  for (uint64_t at = kMagicSize; at < body_end;) {
    unsigned char len[4];
    if (body_end - at < 4 ||
        !in.read(reinterpret_cast<char*>(len), sizeof(len))) {
      return absl::DataLossError(
          absl::StrCat("a record is cut short at byte ", at));
    }
    const uint32_t n = uint32_t{len[0]} << 24 | uint32_t{len[1]} << 16 |
                       uint32_t{len[2]} << 8 | uint32_t{len[3]};
    at += 4;
    rpc::BackupChunk chunk;
    body.resize(n);
    if (n > body_end - at || !in.read(body.data(), n) ||
        !chunk.ParseFromString(body)) {
      return absl::DataLossError(absl::StrCat("malformed record at byte ", at));
    }
    at += n;
    if (chunk.has_range()) {
      if (!done) break;
      out.push_back({chunk.range(), chunk.revision(), 0});
      done = false;
    }
    if (out.empty() || chunk.keys_size() != chunk.values_size()) {
      return absl::DataLossError(absl::StrCat("malformed record at byte ", at));
    }
    out.back().keys += chunk.keys_size();
    done = done || chunk.done();
    if (visit) {
      if (absl::Status s = visit(chunk); !s.ok()) return s;
    }
  }
  if (!done) {
    return absl::DataLossError(absl::StrCat("the copy of group ",
                                            out.back().range.group(), " in ",
                                            path, " is incomplete"));
  }
  return out;
}

}  // namespace tally::kvctl
