#ifndef TALLY_CMD_KVCTL_OUTPUT_H_
#define TALLY_CMD_KVCTL_OUTPUT_H_

#include <algorithm>
#include <iostream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "google/protobuf/message.h"
#include "google/protobuf/util/json_util.h"
#include "nlohmann/json.hpp"
#include "rpc/kv.pb.h"

namespace tally::kvctl {

// Exit codes (the --help footer says the same).
inline constexpr int kExitOk = 0;
inline constexpr int kExitNo = 1;
inline constexpr int kExitBadInput = 2;
inline constexpr int kExitUnavailable = 3;
inline constexpr int kExitOther = 4;

// `m` as proto3 JSON: field names as in the .proto, every field present,
// 64-bit integers as decimal strings, bytes in base64.
inline nlohmann::json ToJson(const google::protobuf::Message& m) {
  std::string out;
  google::protobuf::util::JsonPrintOptions o;
  o.always_print_primitive_fields = true;
  o.preserve_proto_field_names = true;
  if (!google::protobuf::util::MessageToJsonString(m, &out, o).ok()) {
    return nlohmann::json::object();
  }
  return nlohmann::json::parse(out);
}

template <typename M>
nlohmann::json ToJson(const std::vector<M>& messages) {
  nlohmann::json out = nlohmann::json::array();
  for (const M& m : messages) out.push_back(ToJson(m));
  return out;
}

// Values of results kvctl builds itself, spelled as ToJson spells them (a
// double, as in jq or JavaScript, cannot hold every 64-bit integer).
inline std::string JsonInt(uint64_t v) { return absl::StrCat(v); }
inline std::string JsonInt(int64_t v) { return absl::StrCat(v); }
inline std::string JsonBytes(const std::string& s) {
  return absl::Base64Escape(s);
}

// `s` for one column of a tab-separated line: backslash, tab, newline and
// carriage return as \\, \t, \n and \r.
inline std::string Column(const std::string& s) {
  std::string out;
  out.reserve(s.size());
  for (char ch : s) {
    switch (ch) {
      case '\\':
        out += "\\\\";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      default:
        out += ch;
    }
  }
  return out;
}

// Rows printed under a header, each column as wide as its widest cell
// (cells escaped as by Column), two spaces apart.
class Table {
 public:
  explicit Table(std::vector<std::string> header) {
    rows_.push_back(std::move(header));
  }
  void Add(std::vector<std::string> row) { rows_.push_back(std::move(row)); }
  void Print(std::ostream& out) const {
    std::vector<size_t> width;
    for (const auto& row : rows_) {
      width.resize(std::max(width.size(), row.size()), 0);
      for (size_t i = 0; i < row.size(); ++i) {
        width[i] = std::max(width[i], Column(row[i]).size());
      }
    }
    for (const auto& row : rows_) {
      std::string line;
      for (size_t i = 0; i < row.size(); ++i) {
        const std::string cell = Column(row[i]);
        line += cell;
        if (i + 1 < row.size()) line.append(width[i] - cell.size() + 2, ' ');
      }
      line.erase(line.find_last_not_of(' ') + 1);  // an empty last cell
      out << line << "\n";
    }
  }

 private:
  std::vector<std::vector<std::string>> rows_;
};

// What a command prints on standard output. Text for people by default;
// with -o json one JSON object per line, the same shape for every command:
//   {"command": "lock acquire", "headers": [...], "result": {...}}
// "headers" holds the ResponseHeader (rpc/kv.proto) of every answer the
// command was built from: one per shard for a listing over several shards,
// none for commands served without one (health, snapshot status). Streams
// (watch, elect --listen) print one object per message. Errors go to
// standard error as text in both modes; the exit code says which kind.
class Output {
 public:
  Output(std::string command, bool json, bool hex)
      : command_(std::move(command)), json_(json), hex_(hex) {}

  bool json() const { return json_; }

  // One answer: its "header" field (if it has one) goes to "headers", the
  // other fields to "result".
  void Print(const google::protobuf::Message& response) const {
    nlohmann::json result = ToJson(response);
    nlohmann::json headers = nlohmann::json::array();
    if (auto h = result.find("header"); h != result.end()) {
      headers.push_back(std::move(*h));
      result.erase(h);
    }
    Emit(std::move(result), std::move(headers));
  }
  // A result assembled by the command, from the answers with `headers`.
  void Print(nlohmann::json result,
             const std::vector<rpc::ResponseHeader>& headers = {}) const {
    nlohmann::json h = nlohmann::json::array();
    for (const rpc::ResponseHeader& one : headers) h.push_back(ToJson(one));
    Emit(std::move(result), std::move(h));
  }

  // A command that changed something and has nothing else to say: "OK",
  // or `result` with -o json.
  void Ok(nlohmann::json result) const {
    if (json_) {
      Print(std::move(result));
    } else {
      std::cout << "OK" << std::endl;
    }
  }

  // A key or value in text output: hex with --hex, else escaped (Column).
  std::string Bytes(const std::string& s) const {
    return hex_ ? absl::BytesToHexString(s) : Column(s);
  }
  // A value printed alone on its line (get KEY): hex with --hex, else as is.
  std::string Raw(const std::string& s) const {
    return hex_ ? absl::BytesToHexString(s) : s;
  }

 private:
  void Emit(nlohmann::json result, nlohmann::json headers) const {
    nlohmann::json out = {{"command", command_},
                          {"headers", std::move(headers)},
                          {"result", std::move(result)}};
    // Text kvctl echoes from its arguments (a lock's name, a file) may not
    // be UTF-8: such bytes print as U+FFFD rather than failing.
    std::cout << out.dump(-1, ' ', false,
                          nlohmann::json::error_handler_t::replace)
              << std::endl;
  }

  std::string command_;
  bool json_;
  bool hex_;
};

// A command's answers from each endpoint, for -o json:
// {"endpoints": [{"endpoint": "host:port", ...the answer's fields}, or
// {"endpoint": ..., "error": "UNAVAILABLE: ..."}]}.
class EndpointResults {
 public:
  template <typename M>
  void Add(const std::string& endpoint, const absl::StatusOr<M>& answer) {
    Add(endpoint, answer.ok() ? ToJson(*answer) : nlohmann::json::object(),
        answer.status());
  }
  void Add(const std::string& endpoint, nlohmann::json fields,
           const absl::Status& st = absl::OkStatus()) {
    fields["endpoint"] = endpoint;
    if (!st.ok()) fields["error"] = st.ToString();
    endpoints_.push_back(std::move(fields));
  }
  nlohmann::json json() const { return {{"endpoints", endpoints_}}; }

 private:
  nlohmann::json endpoints_ = nlohmann::json::array();
};

// The first key after every key that starts with `prefix` ("" if none:
// the prefix is empty or all 0xff bytes).
inline std::string PrefixEnd(std::string prefix) {
  while (!prefix.empty() && static_cast<unsigned char>(prefix.back()) == 0xff) {
    prefix.pop_back();
  }
  if (!prefix.empty()) prefix.back() = static_cast<char>(prefix.back() + 1);
  return prefix;
}

// Prints the error and returns its exit code.
inline int Fail(const absl::Status& st) {
  std::cerr << "kvctl: " << absl::StatusCodeToString(st.code()) << ": "
            << st.message() << "\n";
  switch (st.code()) {
    case absl::StatusCode::kNotFound:
    case absl::StatusCode::kFailedPrecondition:
      return kExitNo;
    case absl::StatusCode::kInvalidArgument:
      return kExitBadInput;
    case absl::StatusCode::kUnavailable:
    case absl::StatusCode::kDeadlineExceeded:
    case absl::StatusCode::kResourceExhausted:
      return kExitUnavailable;
    default:
      return kExitOther;
  }
}

}  // namespace tally::kvctl

#endif  // TALLY_CMD_KVCTL_OUTPUT_H_
