import Foundation

/// Human-readable views of jobs for `jobs`, `status`, `cancel` and `submit --wait`.
public enum JobFormatting {
    /// Bar and counts, plus the failure count when there is one (failed items fill the bar too:
    /// they are finished, just not successfully).
    public static func progress(_ job: Job) -> String {
        let bar = ProgressBar.render(done: job.finished, total: job.total)
        return job.failed > 0 ? "\(bar) (\(job.failed) failed)" : bar
    }

    public static func table(_ jobs: [Job], timeZone: TimeZone = .current) -> String {
        guard !jobs.isEmpty else { return "no jobs" }
        return TextTable.render(
            header: ["ID", "STATUS", "PROGRESS", "CREATED"],
            rows: jobs.map { [$0.id, $0.status.rawValue, progress($0), Timestamp.format($0.created, timeZone: timeZone)] })
    }

    public static func details(_ job: Job, timeZone: TimeZone = .current) -> String {
        TextTable.render(header: ["id", job.id], rows: [
            ["status", job.status.rawValue],
            ["progress", ProgressBar.render(done: job.finished, total: job.total)],
            ["completed", String(job.completed)],
            ["failed", String(job.failed)],
            ["created", Timestamp.format(job.created, timeZone: timeZone)],
            ["finished", Timestamp.format(job.finishedAt, timeZone: timeZone)],
        ])
    }

    /// The one line `submit --wait` redraws.
    public static func progressLine(_ job: Job) -> String {
        "\(job.id) \(job.status.rawValue) \(progress(job))"
    }
}
