// Public types of the sshd helper.

export interface StartSshdOptions {
  /** Lines appended to the generated sshd_config (later lines do not override earlier ones in sshd). */
  extraConfig?: string;
  /** How long to wait for the SSH banner. Default 20 000 ms. */
  startTimeoutMs?: number;
}

export interface SshdHandle {
  /** Always `127.0.0.1`. */
  host: string;
  port: number;
  /** The OS user running the tests (e.g. `root`); the client key may log in as this user only. */
  user: string;
  /** Path of the client's unencrypted ed25519 private key (OpenSSH format). */
  clientKeyPath: string;
  /** Contents of clientKeyPath, ready for ssh2's `privateKey`. */
  clientPrivateKey: Buffer;
  /** Host public key, `ssh-ed25519 AAAA…` (type and base64 blob, no comment). */
  hostPublicKey: string;
  /** Host key fingerprint as `ssh-keygen -lf` prints it, `SHA256:…` (unpadded base64). */
  hostKeyFingerprint: string;
  /** known_hosts entry for this server, `[127.0.0.1]:PORT ssh-ed25519 AAAA…`. */
  knownHostsLine: string;
  /** Process id of the listening sshd. */
  pid: number;
  /** File receiving sshd's log (`-e`). Removed by stop(). */
  logFile: string;
  /** SIGTERM, wait for exit (SIGKILL after 10 s), remove keys and config. Idempotent. */
  stop(): Promise<void>;
}
