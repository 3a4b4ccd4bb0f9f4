import DirtyScopeModel
import DirtyScopeRecording
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Where a migration goes: a Unix socket path, or a host and a TCP port.
public enum MigrationAddress: Equatable, Sendable, CustomStringConvertible {
    case unix(String)
    case tcp(host: String, port: UInt16)

    /// Parses "unix:PATH" or "HOST:PORT" ("[::1]:PORT" for IPv6); the error names the value.
    public init(parsing text: String) throws(SessionError) {
        if text.hasPrefix("unix:") {
            let path = String(text.dropFirst(5))
            guard !path.isEmpty, path.utf8.count < 108 else {
                throw .invalidArgument("address '\(text)': a Unix socket path of 1 to 107 bytes is needed after 'unix:'")
            }
            self = .unix(path)
            return
        }
        guard let colon = text.lastIndex(of: ":") else {
            throw .invalidArgument("address '\(text)' is not unix:PATH or HOST:PORT")
        }
        var host = String(text[..<colon])
        if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        guard !host.isEmpty, let port = UInt16(text[text.index(after: colon)...]), port > 0 else {
            throw .invalidArgument("address '\(text)': HOST:PORT needs a host and a port from 1 to 65535")
        }
        self = .tcp(host: host, port: port)
    }

    public var description: String {
        switch self {
        case .unix(let path): return "unix:\(path)"
        case .tcp(let host, let port): return host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
        }
    }

    /// Whether listening here stays on this machine (a Unix socket, or a loopback address).
    public var isLocal: Bool {
        switch self {
        case .unix: return true
        case .tcp(let host, _): return host == "localhost" || host.hasPrefix("127.") || host == "::1"
        }
    }
}

/// A failure of the migration stream or its peer, in a line.
public struct MigrationError: Error, Equatable, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// One end of a migration stream: a connected socket that sends and receives frames.
/// Sends are whole (a partial write goes on) and never raise SIGPIPE; a receive waits at
/// most `timeoutNanos` for each frame and reads no more than the header allows.
public final class MigrationChannel: @unchecked Sendable {
    private let fd: Int32
    private var closed = false
    /// Bytes sent and received so far.
    public private(set) var bytesSent: UInt64 = 0
    public private(set) var bytesReceived: UInt64 = 0

    init(fd: Int32) {
        self.fd = fd
        var one: Int32 = 1
        _ = setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
    }

    deinit { close() }

    /// Closes the socket (idempotent).
    public func close() {
        guard !closed else { return }
        closed = true
        _ = Glibc.close(fd)
    }

    /// Connects to a listening destination.
    public static func connect(to address: MigrationAddress, timeoutNanos: UInt64 = 10_000_000_000) throws(MigrationError) -> MigrationChannel {
        let deadline = monotonicNanos() + timeoutNanos
        while true {
            do {
                return try connectOnce(address)
            } catch {
                // A listener not up yet: try again until the deadline (a receiver just started).
                guard monotonicNanos() < deadline, error.description.contains("refused") || error.description.contains("No such file") else {
                    throw error
                }
                usleep(50_000)
            }
        }
    }

    private static func connectOnce(_ address: MigrationAddress) throws(MigrationError) -> MigrationChannel {
        switch address {
        case .unix(let path):
            let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            guard fd >= 0 else { throw MigrationError("socket: \(errnoText())") }
            var sa = unixAddress(path)
            let r = withUnsafePointer(to: &sa) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
            }
            guard r == 0 else {
                let e = errnoText()
                _ = Glibc.close(fd)
                throw MigrationError("cannot connect to \(address): \(e)")
            }
            return MigrationChannel(fd: fd)
        case .tcp(let host, let port):
            var hints = addrinfo()
            hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
            var list: UnsafeMutablePointer<addrinfo>?
            let g = getaddrinfo(host, String(port), &hints, &list)
            guard g == 0, let first = list else { throw MigrationError("cannot resolve \(host): \(String(cString: gai_strerror(g)))") }
            defer { freeaddrinfo(list) }
            var last = "no address"
            var ai: UnsafeMutablePointer<addrinfo>? = first
            while let a = ai {
                let fd = socket(a.pointee.ai_family, a.pointee.ai_socktype | Int32(SOCK_CLOEXEC.rawValue), a.pointee.ai_protocol)
                if fd >= 0 {
                    if Glibc.connect(fd, a.pointee.ai_addr, a.pointee.ai_addrlen) == 0 { return MigrationChannel(fd: fd) }
                    last = errnoText()
                    _ = Glibc.close(fd)
                }
                ai = a.pointee.ai_next
            }
            throw MigrationError("cannot connect to \(address): \(last)")
        }
    }

    static func unixAddress(_ path: String) -> sockaddr_un {
        var sa = sockaddr_un()
        sa.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &sa.sun_path) { raw in
            let bytes = Array(path.utf8.prefix(raw.count - 1))
            raw.copyBytes(from: bytes)
            raw[bytes.count] = 0
        }
        return sa
    }

    // MARK: Sending

    /// Sends `bytes` whole.
    public func send(_ bytes: [UInt8]) throws(MigrationError) {
        var sent = 0
        while sent < bytes.count {
            let n = bytes.withUnsafeBytes { raw in Glibc.send(fd, raw.baseAddress! + sent, raw.count - sent, Int32(MSG_NOSIGNAL)) }
            if n < 0 {
                if errno == EINTR { continue }
                throw MigrationError("the connection broke while sending: \(errnoText())")
            }
            sent += n
        }
        bytesSent &+= UInt64(bytes.count)
    }

    public func send(_ frame: MigrationWire.Frame) throws(MigrationError) { try send(MigrationWire.encode(frame)) }

    /// Sends `parts` one after the other, whole, with as few system calls as the socket
    /// allows (sendmsg with a vector: a frame's header, fields and pages without copying
    /// them together first).
    public func send(parts: [UnsafeRawBufferPointer]) throws(MigrationError) {
        var vectors = parts.filter { $0.count > 0 }.map { iovec(iov_base: UnsafeMutableRawPointer(mutating: $0.baseAddress), iov_len: $0.count) }
        var total = 0
        for v in vectors { total += v.iov_len }
        var first = 0
        while first < vectors.count {
            var message = msghdr()
            let n = vectors.withUnsafeMutableBufferPointer { buffer -> Int in
                message.msg_iov = buffer.baseAddress! + first
                message.msg_iovlen = buffer.count - first
                return sendmsg(fd, &message, Int32(MSG_NOSIGNAL))
            }
            if n < 0 {
                if errno == EINTR { continue }
                throw MigrationError("the connection broke while sending: \(errnoText())")
            }
            // Step past what went out: whole vectors, then into the next one.
            var left = n
            while first < vectors.count, left >= vectors[first].iov_len {
                left -= vectors[first].iov_len
                first += 1
            }
            if left > 0 {
                vectors[first].iov_base = vectors[first].iov_base! + left
                vectors[first].iov_len -= left
            }
        }
        bytesSent &+= UInt64(total)
    }

    // MARK: Receiving

    /// Exactly `count` bytes, waiting at most until `deadline` (monotonic ns) for them.
    public func receive(_ count: Int, deadline: UInt64) throws(MigrationError) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: count)
        var got = 0
        while got < count {
            let now = monotonicNanos()
            guard now < deadline else { throw MigrationError("the peer sent nothing for too long (\(got) of \(count) bytes of a frame)") }
            var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let wait = Int32(min(1000, (deadline - now) / 1_000_000 + 1))
            let ready = poll(&p, 1, wait)
            if ready < 0 {
                if errno == EINTR { continue }
                throw MigrationError("poll: \(errnoText())")
            }
            guard ready > 0 else { continue }
            let n = out.withUnsafeMutableBytes { raw in recv(fd, raw.baseAddress! + got, count - got, 0) }
            if n < 0 {
                if errno == EINTR || errno == EAGAIN { continue }
                throw MigrationError("the connection broke while receiving: \(errnoText())")
            }
            guard n > 0 else {
                throw MigrationError(got == 0 && count == MigrationWire.headerBytes
                    ? "the peer hung up" : "the peer hung up inside a frame (\(got) of \(count) bytes)")
            }
            got += n
        }
        bytesReceived &+= UInt64(count)
        return out
    }

    /// What `receive(layout:timeoutNanos:_:)` hands over: a pages frame in place (valid only
    /// inside the call), or any other frame decoded.
    public enum Incoming {
        case pages(MigrationWire.PagesView)
        case frame(MigrationWire.Frame)
    }

    /// The payload buffer, kept from frame to frame.
    private var buffer: [UInt8] = []

    /// Exactly `count` bytes into `buffer` (grown as needed), waiting at most until `deadline`.
    private func receive(into count: Int, deadline: UInt64) throws(MigrationError) {
        if buffer.count < count { buffer = [UInt8](repeating: 0, count: max(count, buffer.count * 2)) }
        var got = 0
        while got < count {
            let now = monotonicNanos()
            guard now < deadline else { throw MigrationError("the peer sent nothing for too long (\(got) of \(count) bytes of a frame)") }
            var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let ready = poll(&p, 1, Int32(min(1000, (deadline - now) / 1_000_000 + 1)))
            if ready < 0 {
                if errno == EINTR { continue }
                throw MigrationError("poll: \(errnoText())")
            }
            guard ready > 0 else { continue }
            let n = buffer.withUnsafeMutableBytes { raw in recv(fd, raw.baseAddress! + got, count - got, 0) }
            if n < 0 {
                if errno == EINTR || errno == EAGAIN { continue }
                throw MigrationError("the connection broke while receiving: \(errnoText())")
            }
            guard n > 0 else { throw MigrationError("the peer hung up inside a frame (\(got) of \(count) bytes)") }
            got += n
        }
        bytesReceived &+= UInt64(count)
    }

    /// Exactly `count` bytes straight into `memory` (a plain copy's receiving end).
    func receive(into memory: UnsafeMutableRawPointer, count: Int, deadline: UInt64) throws(MigrationError) {
        var got = 0
        while got < count {
            guard monotonicNanos() < deadline else { throw MigrationError("the peer sent nothing for too long") }
            let n = recv(fd, memory + got, count - got, 0)
            if n < 0 {
                if errno == EINTR || errno == EAGAIN { continue }
                throw MigrationError("the connection broke while receiving: \(errnoText())")
            }
            guard n > 0 else { throw MigrationError("the peer hung up (\(got) of \(count) bytes)") }
            got += n
        }
        bytesReceived &+= UInt64(count)
    }

    /// The next frame, checked (`layout`: the hello, once known), handed to `body`: a pages
    /// frame in place in the channel's buffer, any other decoded. Waits at most `timeoutNanos`.
    public func receive<R>(layout: MigrationWire.Hello?, timeoutNanos: UInt64 = 30_000_000_000,
                           _ body: (Incoming) throws(MigrationError) -> R) throws(MigrationError) -> R {
        let deadline = monotonicNanos() &+ timeoutNanos
        let header = try receive(MigrationWire.headerBytes, deadline: deadline)
        let h: (type: UInt8, length: Int, crc: UInt32)
        do { h = try MigrationWire.header(header) } catch { throw MigrationError(error.description) }
        try receive(into: h.length, deadline: deadline)
        if h.type == 3, let layout {
            let view = buffer.withUnsafeBytes { raw -> Result<MigrationWire.PagesView, MigrationWire.WireError> in
                do throws(MigrationWire.WireError) {
                    return .success(try MigrationWire.pagesView(UnsafeRawBufferPointer(rebasing: raw[0..<h.length]), crc: h.crc, layout: layout))
                } catch {
                    return .failure(error)
                }
            }
            switch view {
            case .success(let v):
                // The view points into `buffer`, which nothing changes until the next receive.
                return try body(.pages(v))
            case .failure(let e):
                throw MigrationError(e.description)
            }
        }
        let frame: MigrationWire.Frame
        do { frame = try MigrationWire.decode(type: h.type, payload: Array(buffer[0..<h.length]), crc: h.crc, layout: layout) } catch {
            throw MigrationError(error.description)
        }
        return try body(.frame(frame))
    }

    /// The next frame, checked (`layout`: the hello, once known). Waits at most `timeoutNanos`.
    public func receiveFrame(layout: MigrationWire.Hello?, timeoutNanos: UInt64 = 30_000_000_000) throws(MigrationError) -> MigrationWire.Frame {
        let deadline = monotonicNanos() &+ timeoutNanos
        let header = try receive(MigrationWire.headerBytes, deadline: deadline)
        do {
            let h = try MigrationWire.header(header)
            let payload = try receive(h.length, deadline: deadline)
            return try MigrationWire.decode(type: h.type, payload: payload, crc: h.crc, layout: layout)
        } catch let e as MigrationWire.WireError {
            throw MigrationError(e.description)
        } catch let e as MigrationError {
            throw e
        } catch {
            throw MigrationError("\(error)")
        }
    }

    /// Sends this side's greeting and checks the peer's.
    public func greet(as role: MigrationWire.Role, timeoutNanos: UInt64 = 10_000_000_000) throws(MigrationError) {
        try send(MigrationWire.greeting(role))
        let peer = try receive(MigrationWire.greetingBytes, deadline: monotonicNanos() + timeoutNanos)
        do { try MigrationWire.checkGreeting(peer, expected: role == .source ? .destination : .source) } catch {
            throw MigrationError(error.description)
        }
    }

    /// A socket pair: two connected channels (tests, and a migration within one process).
    public static func pair() throws(MigrationError) -> (MigrationChannel, MigrationChannel) {
        var fds: [Int32] = [0, 0]
        guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &fds) == 0 else {
            throw MigrationError("socketpair: \(errnoText())")
        }
        return (MigrationChannel(fd: fds[0]), MigrationChannel(fd: fds[1]))
    }
}

/// A listening socket for `dirtyscope receive`: loopback or a Unix socket unless the user
/// named another address. Closes (and unlinks its Unix socket) when released.
public final class MigrationListener: @unchecked Sendable {
    private let fd: Int32
    public let address: MigrationAddress
    private var unlinkPath: String?

    public init(_ address: MigrationAddress) throws(MigrationError) {
        self.address = address
        switch address {
        case .unix(let path):
            var st = stat()
            if lstat(path, &st) == 0 {
                guard st.st_mode & S_IFMT == S_IFSOCK else {
                    throw MigrationError("cannot listen on \(address): \(path) exists and is not a socket")
                }
                unlink(path)   // a socket left by an earlier receiver
            }
            fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            guard fd >= 0 else { throw MigrationError("socket: \(errnoText())") }
            var sa = MigrationChannel.unixAddress(path)
            let r = withUnsafePointer(to: &sa) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
            }
            guard r == 0 else {
                let e = errnoText()
                _ = Glibc.close(fd)
                throw MigrationError("cannot listen on \(address): \(e)")
            }
            unlinkPath = path
        case .tcp(let host, let port):
            var hints = addrinfo()
            hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
            hints.ai_flags = AI_PASSIVE
            var list: UnsafeMutablePointer<addrinfo>?
            let g = getaddrinfo(host, String(port), &hints, &list)
            guard g == 0, let a = list else { throw MigrationError("cannot resolve \(host): \(String(cString: gai_strerror(g)))") }
            defer { freeaddrinfo(list) }
            fd = socket(a.pointee.ai_family, a.pointee.ai_socktype | Int32(SOCK_CLOEXEC.rawValue), a.pointee.ai_protocol)
            guard fd >= 0 else { throw MigrationError("socket: \(errnoText())") }
            var one: Int32 = 1
            _ = setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
            guard bind(fd, a.pointee.ai_addr, a.pointee.ai_addrlen) == 0 else {
                let e = errnoText()
                _ = Glibc.close(fd)
                throw MigrationError("cannot listen on \(address): \(e)")
            }
        }
        guard listen(fd, 4) == 0 else {
            let e = errnoText()
            _ = Glibc.close(fd)
            throw MigrationError("cannot listen on \(address): \(e)")
        }
    }

    deinit {
        _ = Glibc.close(fd)
        if let unlinkPath { unlink(unlinkPath) }
    }

    /// The next connection, waiting at most `timeoutNanos` (nil: no connection came).
    public func accept(timeoutNanos: UInt64) throws(MigrationError) -> MigrationChannel? {
        var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        let ready = poll(&p, 1, Int32(min(UInt64(Int32.max), timeoutNanos / 1_000_000)))
        if ready < 0 { if errno == EINTR { return nil }; throw MigrationError("poll: \(errnoText())") }
        guard ready > 0 else { return nil }
        let c = Glibc.accept(fd, nil, nil)
        guard c >= 0 else {
            if errno == EINTR || errno == EAGAIN || errno == ECONNABORTED { return nil }
            throw MigrationError("accept: \(errnoText())")
        }
        _ = fcntl(c, F_SETFD, FD_CLOEXEC)
        return MigrationChannel(fd: c)
    }
}

/// errno as text.
func errnoText() -> String { "\(String(cString: strerror(errno))) (errno \(errno))" }
