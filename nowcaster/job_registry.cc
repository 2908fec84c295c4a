#include "nowcaster/job_registry.h"

#include "absl/strings/str_cat.h"

namespace nino::nowcaster {

absl::Status JobRegistry::Add(std::shared_ptr<Job> job) {
  absl::MutexLock lock(&mu_);
  const std::string& id = job->spec().job_id;
  if (jobs_.count(id) > 0) {
    return absl::AlreadyExistsError(absl::StrCat("job ", id, " is already registered"));
  }
  jobs_.emplace(id, std::move(job));
  return absl::OkStatus();
}

bool JobRegistry::Contains(absl::string_view job_id) const {
  absl::MutexLock lock(&mu_);
  return jobs_.find(job_id) != jobs_.end();
}

absl::StatusOr<std::shared_ptr<Job>> JobRegistry::Find(absl::string_view job_id,
                                                       absl::string_view token) const {
  std::shared_ptr<Job> job;
  {
    absl::MutexLock lock(&mu_);
    auto it = jobs_.find(job_id);
    if (it == jobs_.end()) {
      return absl::NotFoundError(absl::StrCat("no open job '", job_id, "'"));
    }
    job = it->second;
  }
  if (!job->TokenMatches(token)) {
    return absl::PermissionDeniedError(absl::StrCat("wrong job_token for job '", job_id, "'"));
  }
  return job;
}

absl::Status JobRegistry::Remove(absl::string_view job_id, absl::string_view token) {
  std::shared_ptr<Job> job;
  {
    absl::MutexLock lock(&mu_);
    auto it = jobs_.find(job_id);
    if (it == jobs_.end()) {
      return absl::NotFoundError(absl::StrCat("no open job '", job_id, "'"));
    }
    if (!it->second->TokenMatches(token)) {
      return absl::PermissionDeniedError(absl::StrCat("wrong job_token for job '", job_id, "'"));
    }
    job = std::move(it->second);
    jobs_.erase(it);
  }
  job->Close();
  return absl::OkStatus();
}

std::vector<std::shared_ptr<Job>> JobRegistry::List() const {
  absl::MutexLock lock(&mu_);
  std::vector<std::shared_ptr<Job>> jobs;
  jobs.reserve(jobs_.size());
  for (const auto& [id, job] : jobs_) jobs.push_back(job);
  return jobs;
}

size_t JobRegistry::size() const {
  absl::MutexLock lock(&mu_);
  return jobs_.size();
}

}  // namespace nino::nowcaster
