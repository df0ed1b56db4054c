import { readMigrations } from '../platform/db/index.ts';

export {
  type AcknowledgeInput,
  type AcknowledgementView,
  createForgeryService,
  type ForgeryService,
} from './acknowledge.ts';
export { type AlertDelivery, createAlertDelivery, type SendMail } from './alert-delivery.ts';
export { type AlertEngine, type AlertView, createAlertEngine } from './alert-engine.ts';
export { alertRoutes, SavedSettings as SavedAlertSettings } from './alert-routes.ts';
export { type AlertService, type AlertSettingsView, createAlertService } from './alert-service.ts';
export { shownSettings } from './alert-weakening.ts';
export {
  checkExpectedPoint,
  checkpointLag,
  describeCheckpointLag,
  type ExpectedPoint,
  parseExpectedPoint,
} from './anchors.ts';
export { type ChainedEvent, chainHash } from './canonical.ts';
export { type AuditActionDef, auditActions, defineAuditActions, isKnownAuditAction } from './catalogue.ts';
export { auditChainRoutes } from './chain-routes.ts';
export { CheckpointRefusedError, createCheckpoint } from './checkpoint.ts';
export { type CheckpointMessage, checkpointMessage } from './checkpoint-messages.ts';
export { denialAuditor } from './denials.ts';
export { auditableUrl, shownUrl } from './details.ts';
export { createForwarder, type Forwarder } from './forward.ts';
export { auditJobsPlugin, checkpointAllChains, evaluateAllChains } from './jobs.ts';
export { auditMacKey, configureAuditMac, type MacKey, macKeyFrom } from './mac.ts';
export { PruneRefusedError, type PruneResult, pruneAllChains, pruneChain } from './prune.ts';
export { createReadCounter, type ReadCounter, readCountingPlugin } from './reads.ts';
export { type AuditAction, type AuditInput, recordAuditEvent, recordAuditEvents } from './record.ts';
export { resealAlertSecret, resealSinkSecrets } from './reseal-secrets.ts';
export {
  createRetentionService,
  RETENTION_CHANGE_DELAY_DAYS,
  type RetentionService,
  readRetentionDefaults,
  retentionDefaultsWriter,
  retentionInForce,
} from './retention.ts';
export { auditRetentionRoutes } from './retention-routes.ts';
export { auditRoutes } from './routes.ts';
export { checkFilters as checkAuditFilters } from './search.ts';
export { type AuditService, createAuditService } from './service.ts';
export { type CheckpointSigner, checkpointSigner, publicKeyFromPem, trustedKeys } from './signer.ts';
export { oneCertificatePem, type SinkApproval, type SinkInput } from './sink-input.ts';
export { createSinkService, type SinkService } from './sink-service.ts';
export type { OutboundRequest, SendHttp } from './sink-transport.ts';
export { loadTrustedKeys, recordSigningKey } from './store.ts';
export {
  createSyslogTransport,
  formatSyslog,
  formatSyslogCheckpoint,
  type SendSyslog,
  sdIdFor,
} from './syslog.ts';
export type { AuditTables } from './tables.ts';
export { type ChainReport, verifyAuditChain } from './verify.ts';

export const auditMigrations = readMigrations(new URL('./migrations/', import.meta.url));
