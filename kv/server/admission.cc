#include "kv/server/internal/admission.h"

#include <algorithm>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace tally::kv::server {

namespace {

// Weight of the newest call in a class's mean latency.
constexpr double kMeanWeight = 0.05;
constexpr auto kLeastRetryAfter = std::chrono::milliseconds(5);
constexpr auto kMostRetryAfter = std::chrono::milliseconds(1000);

}  // namespace

const char* PriorityName(Priority p) {
  switch (p) {
    case Priority::kControl:
      return "control";
    case Priority::kWrite:
      return "write";
    case Priority::kRead:
      return "read";
    case Priority::kScan:
      return "scan";
  }
  return "?";
}

Priority PriorityOf(const char* method, bool write, bool scan) {
  for (const char* m : {"LockRelease", "LeaseRevoke"}) {
    if (std::strcmp(method, m) == 0) return Priority::kControl;
  }
  if (write) return Priority::kWrite;
  return scan ? Priority::kScan : Priority::kRead;
}

Admission::Admission(Options options) {
  const double target = std::chrono::duration<double>(options.target).count();
  for (size_t i = 0; i < kPriorities; ++i) {
    const Priority p = Priority(i);
    const bool reads = p == Priority::kRead || p == Priority::kScan;
    Class& c = classes_[i];
    c.stats.most = reads ? options.most_reads : options.most_writes;
    c.stats.limit = c.stats.most;
    c.limit = static_cast<double>(c.stats.most);
    c.target_seconds = p == Priority::kScan ? 5 * target : target;
  }
}

absl::Status Admission::Admit(Priority p, Clock::time_point deadline) {
  const std::chrono::duration<double> left = deadline - Clock::now();
  absl::MutexLock l(&mu_);
  Class& c = classes_[static_cast<size_t>(p)];
  ClassStats& s = c.stats;
  if (left.count() <= 0) {
    ++s.expired;
    return absl::DeadlineExceededError(
        "the call's deadline passed before it was served; nothing was done");
  }
  if (s.in_flight >= s.limit) {
    ++s.shed;
    return absl::ResourceExhaustedError(
        absl::StrCat("overloaded: ", s.in_flight, " ", PriorityName(p),
                     " calls are waiting here already; back off and retry"));
  }
  // With none in flight the call is served at once, whatever the mean.
  if (s.in_flight > 0 && left.count() < c.mean_seconds) {
    ++s.late;
    return absl::ResourceExhaustedError(absl::StrCat(
        "overloaded: ", PriorityName(p), " calls take ",
        static_cast<int64_t>(c.mean_seconds * 1000),
        " ms here now, more than the ",
        static_cast<int64_t>(left.count() * 1000),
        " ms left before this call's deadline; nothing was done; back off "
        "and retry"));
  }
  ++s.in_flight;
  ++s.admitted;
  return absl::OkStatus();
}

void Admission::Release(Priority p, double seconds, Steady::time_point now) {
  absl::MutexLock l(&mu_);
  Class& c = classes_[static_cast<size_t>(p)];
  --c.stats.in_flight;
  c.mean_seconds += kMeanWeight * (seconds - c.mean_seconds);
  if (now - c.adjusted < kAdjustEvery) return;
  c.adjusted = now;
  const double most = static_cast<double>(c.stats.most);
  if (c.mean_seconds > c.target_seconds) {
    c.limit = std::max(kLeastLimit, c.limit * 0.9);
  } else if (static_cast<double>(c.stats.in_flight) >= c.limit / 2) {
    c.limit = std::min(most, c.limit + std::max(1.0, c.limit / 20));
  }
  c.stats.limit = static_cast<uint64_t>(c.limit);
}

std::chrono::milliseconds Admission::RetryAfter(Priority p) const {
  double mean;
  {
    absl::MutexLock l(&mu_);
    mean = classes_[static_cast<size_t>(p)].mean_seconds;
  }
  const auto ms = std::chrono::milliseconds(static_cast<int64_t>(mean * 1000));
  return std::clamp<std::chrono::milliseconds>(ms, kLeastRetryAfter,
                                               kMostRetryAfter);
}

Admission::ClassStats Admission::Stats(Priority p) const {
  absl::MutexLock l(&mu_);
  return classes_[static_cast<size_t>(p)].stats;
}

std::string Admission::Render() const {
  std::array<ClassStats, kPriorities> s;
  for (size_t i = 0; i < kPriorities; ++i) s[i] = Stats(Priority(i));
  std::string out;
  const struct {
    const char* name;
    const char* type;
    const char* help;
    uint64_t ClassStats::*field;
  } families[] = {
      {"tally_admission_in_flight", "gauge",
       "Client calls admitted and not yet answered, by class.",
       &ClassStats::in_flight},
      {"tally_admission_limit", "gauge",
       "The most client calls of a class admitted at once.",
       &ClassStats::limit},
      {"tally_admission_admitted_total", "counter",
       "Client calls admitted, by class.", &ClassStats::admitted},
  };
  for (const auto& f : families) {
    absl::StrAppend(&out, "# HELP ", f.name, " ", f.help, "\n# TYPE ", f.name,
                    " ", f.type, "\n");
    for (size_t i = 0; i < kPriorities; ++i) {
      absl::StrAppend(&out, f.name, "{class=\"", PriorityName(Priority(i)),
                      "\"} ", s[i].*f.field, "\n");
    }
  }
  absl::StrAppend(&out,
                  "# HELP tally_admission_shed_total Client calls refused "
                  "before doing any work: the class was full (overload), "
                  "the call's deadline was nearer than the class's calls "
                  "take (late) or had passed (expired).\n"
                  "# TYPE tally_admission_shed_total counter\n");
  for (size_t i = 0; i < kPriorities; ++i) {
    const char* name = PriorityName(Priority(i));
    absl::StrAppend(&out, "tally_admission_shed_total{class=\"", name,
                    "\",reason=\"overload\"} ", s[i].shed, "\n",
                    "tally_admission_shed_total{class=\"", name,
                    "\",reason=\"late\"} ", s[i].late, "\n",
                    "tally_admission_shed_total{class=\"", name,
                    "\",reason=\"expired\"} ", s[i].expired, "\n");
  }
  return out;
}

}  // namespace tally::kv::server
