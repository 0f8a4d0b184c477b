import Foundation
import Testing
@testable import MoECtlKit

@Suite("Formatting")
struct FormattingTests {
    let utc = TimeZone(identifier: "UTC")!

    @Test func progressBarFillsInProportionRoundingDown() {
        #expect(ProgressBar.render(done: 25, total: 50) == "[#####-----] 25/50")
        #expect(ProgressBar.render(done: 0, total: 50) == "[----------] 0/50")
        #expect(ProgressBar.render(done: 49, total: 50) == "[#########-] 49/50")
        #expect(ProgressBar.render(done: 50, total: 50) == "[##########] 50/50")
        #expect(ProgressBar.render(done: 1, total: 3, width: 6) == "[##----] 1/3")
    }

    @Test func progressBarClampsNonsenseCounts() {
        #expect(ProgressBar.render(done: 0, total: 0) == "[----------] 0/0")
        #expect(ProgressBar.render(done: 70, total: 50) == "[##########] 50/50")
        #expect(ProgressBar.render(done: -3, total: 10) == "[----------] 0/10")
    }

    @Test func absurdServerCountsDoNotTrap() {
        #expect(ProgressBar.render(done: Int.max, total: Int.max) == "[##########] \(Int.max)/\(Int.max)")
        #expect(Job(id: "j", status: .running, total: 1, completed: Int.max, failed: 5).finished == Int.max)
        #expect(ServerInfoFormatting.duration(1e300).hasSuffix(" s"))
    }

    @Test func tableAlignsColumnsWithoutTrailingSpaces() {
        let table = TextTable.render(header: ["ID", "STATUS"], rows: [["job_1", "running"], ["j", "queued"]])
        #expect(table == """
            ID     STATUS
            job_1  running
            j      queued
            """)
    }

    @Test func jobsTableShowsIdStatusProgressAndCreatedTime() {
        let jobs = [
            Job(id: "job_b", status: .running, total: 50, completed: 25, created: 1_764_000_060),
            Job(id: "job_a", status: .failed, total: 4, completed: 2, failed: 2, created: 1_764_000_000),
        ]
        #expect(JobFormatting.table(jobs, timeZone: utc) == """
            ID     STATUS   PROGRESS                     CREATED
            job_b  running  [#####-----] 25/50           2025-11-24 16:01:00
            job_a  failed   [##########] 4/4 (2 failed)  2025-11-24 16:00:00
            """)
    }

    @Test func emptyJobListSaysSo() {
        #expect(JobFormatting.table([]) == "no jobs")
    }

    @Test func jobDetailsListEveryField() {
        let job = Job(id: "job_x", status: .completed, total: 2, completed: 2, created: 1_764_000_000,
                      finishedAt: 1_764_000_090)
        #expect(JobFormatting.details(job, timeZone: utc) == """
            id         job_x
            status     completed
            progress   [##########] 2/2
            completed  2
            failed     0
            created    2025-11-24 16:00:00
            finished   2025-11-24 16:01:30
            """)
        #expect(Timestamp.format(nil) == "-")
    }

    @Test func statsLineReportsTokensSecondsAndRate() {
        #expect(GenerationStats(tokens: 64, seconds: 2, firstTokenSeconds: 0.125, finishReason: "length").line
            == "64 tokens in 2.00 s (32.0 tok/s, first token 0.12 s, finish: length)")
        #expect(GenerationStats(tokens: 1, tokensExact: false, seconds: 0.5).line == "~1 token in 0.50 s (2.0 tok/s)")
        #expect(GenerationStats(tokens: nil, seconds: 1, finishReason: "stop").line == "done in 1.00 s (finish: stop)")
    }

    @Test func progressOnATerminalRedrawsInPlace() {
        var display = ProgressDisplay(isTerminal: true)
        #expect(display.update("a 1/2") == "\ra 1/2\u{1B}[K")
        #expect(display.update("a 1/2") == nil)
        #expect(display.update("a 2/2") == "\ra 2/2\u{1B}[K")
        #expect(display.finish() == "\n")
    }

    @Test func progressElsewherePrintsOneLinePerChange() {
        var display = ProgressDisplay(isTerminal: false)
        #expect(display.update("a 1/2") == "a 1/2\n")
        #expect(display.update("a 1/2") == nil)
        #expect(display.update("a 2/2") == "a 2/2\n")
        #expect(display.finish() == nil)
    }

    @Test func healthAndModelsAreReadable() {
        let health = HealthStatus(status: "ok", model: "demo", workers: 2, draft: false, running: 1, waiting: 0,
                                  uptimeSeconds: 125)
        #expect(ServerInfoFormatting.health(health) == """
            status   ok
            model    demo
            workers  2
            draft    no
            running  1
            waiting  0
            uptime   2m 5s
            """)
        let models = ModelList(data: [ModelInfo(id: "demo", ownedBy: "moe-serve", created: 1_764_000_000, maxModelLen: 1024)])
        #expect(ServerInfoFormatting.models(models, timeZone: utc) == """
            ID    MAX LEN  OWNED BY   CREATED
            demo  1024     moe-serve  2025-11-24 16:00:00
            """)
    }
}
