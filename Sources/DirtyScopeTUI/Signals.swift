#if canImport(Glibc)
import Glibc
#endif
import CNcurses
import Synchronization

/// Signal handling while the UI runs. SIGINT, SIGTERM and SIGHUP only store their
/// number, which the loop picks up to restore the terminal and return. Crashes
/// (SIGSEGV, SIGILL, SIGTRAP, SIGBUS, SIGFPE, SIGABRT) restore the terminal, as htop
/// does, and then die of the same signal.
enum Signals {
    static let stopping: [Int32] = [SIGINT, SIGTERM, SIGHUP]
    static let fatal: [Int32] = [SIGSEGV, SIGILL, SIGTRAP, SIGBUS, SIGFPE, SIGABRT]

    /// The last stopping signal that arrived, or 0.
    static let pending = Atomic<Int32>(0)

    /// Installs the handlers; returns the previous ones for `restore`.
    static func install() -> [(Int32, sigaction)] {
        _ = pending.load(ordering: .relaxed)  // initialise it here, not inside a handler
        var previous: [(Int32, sigaction)] = []
        for signal in fatal { sigaction(signal, nil, &previousFatal[Int(signal)]) }
        for signal in stopping + fatal {
            var action = sigaction()
            let isFatal = fatal.contains(signal)
            if isFatal {
                action.__sigaction_handler.sa_handler = restoreAndDie
            } else {
                action.__sigaction_handler.sa_handler = note
            }
            sigemptyset(&action.sa_mask)
            action.sa_flags = 0
            var old = sigaction()
            if sigaction(signal, &action, &old) == 0 { previous.append((signal, old)) }
        }
        return previous
    }

    static func restore(_ previous: [(Int32, sigaction)]) {
        for (signal, action) in previous {
            var action = action
            sigaction(signal, &action, nil)
        }
    }

    /// Takes the pending stopping signal, if any.
    static func take() -> Int32? {
        let signal = pending.exchange(0, ordering: .acquiringAndReleasing)
        return signal == 0 ? nil : signal
    }
}

private func note(_ signal: Int32) {
    Signals.pending.store(signal, ordering: .releasing)
}

/// The fatal signals' handlers from before `install`, by signal number: written before the
/// handlers are installed, only read by them.
nonisolated(unsafe) private var previousFatal: [sigaction] = Array(repeating: sigaction(), count: 65)

private func restoreAndDie(_ signal: Int32) {
    endwin()
    sigaction(signal, &previousFatal[Int(signal)], nil)
}
