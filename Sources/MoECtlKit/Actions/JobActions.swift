import Foundation

/// `moectl jobs`, `status`, `results` and `cancel`.
public enum JobActions {
    public static func list(json: Bool, client: APIClient, console: Console) async throws {
        let jobs = try await client.jobs()
        if json { console.outRaw(jobs.raw) } else { console.outLine(JobFormatting.table(jobs.value.data)) }
    }

    public static func status(id: String, json: Bool, client: APIClient, console: Console) async throws {
        let job = try await client.job(id: id)
        if json { console.outRaw(job.raw) } else { console.outLine(JobFormatting.details(job.value)) }
    }

    /// Results go to stdout untouched (one JSON object per line); the count goes to stderr so that
    /// redirecting stdout to a file still tells the user what happened.
    public static func results(id: String, client: APIClient, console: Console) async throws {
        let body = try await client.jobResults(id: id)
        let count = body.split(separator: UInt8(ascii: "\n")).filter { !$0.allSatisfy { $0 == 0x20 || $0 == 0x0D } }.count
        if count > 0 { console.outRaw(body) }
        console.errLine("\(count) result\(count == 1 ? "" : "s") for job \(id)")
    }

    public static func cancel(id: String, json: Bool, client: APIClient, console: Console) async throws {
        let job = try await client.cancelJob(id: id)
        if json {
            console.outRaw(job.raw)
        } else {
            console.outLine("\(job.value.id) \(job.value.status) \(JobFormatting.progress(job.value))")
        }
    }
}
