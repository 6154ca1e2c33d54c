import DemoData
import Synchronization
import Testing
@testable import Projector

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

@Suite struct SerialWorkerTests {
    /// Work runs one piece at a time, in the order handed over, never more than one piece behind the submitter;
    /// `waitUntilIdle` returns only once everything handed over is done, and `finish` runs what is left.
    @Test func runsWorkInOrderOneAtATime() {
        final class Log: @unchecked Sendable {
            let lock = Mutex<(order: [Int], running: Int, mostRunning: Int)>(([], 0, 0))
        }
        let log = Log()
        let worker = SerialWorker()
        var generator = SplitMix64(seed: 7)
        for piece in 0..<300 {
            // Some pieces are slow, so the submitter often finds the previous one still running.
            let pause = generator.next() % 4 == 0 ? useconds_t(generator.next() % 300) : 0
            worker.submit {
                log.lock.withLock { $0.running += 1; $0.mostRunning = max($0.mostRunning, $0.running) }
                usleep(pause)
                log.lock.withLock { $0.order.append(piece); $0.running -= 1 }
            }
            // Handed over, not necessarily done: at most the piece just submitted is outstanding.
            #expect(log.lock.withLock { $0.order.count } >= piece)
            if piece % 50 == 49 {
                worker.waitUntilIdle()
                #expect(log.lock.withLock { $0.order.count } == piece + 1)
            }
        }
        worker.submit { usleep(2_000); log.lock.withLock { $0.order.append(300) } }
        worker.finish()
        let (order, running, mostRunning) = log.lock.withLock { $0 }
        #expect(order == Array(0...300))
        #expect(running == 0 && mostRunning == 1)
    }
}
