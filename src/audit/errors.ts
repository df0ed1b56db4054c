import { defineErrors } from '../platform/http/problem.ts';

export const auditError = defineErrors({
  bad_cursor: { status: 400, title: 'Invalid cursor' },
  bad_filter: { status: 400, title: 'Invalid filter' },
  range_too_large: { status: 400, title: 'Time range too large' },
  read_cap_reached: { status: 403, title: 'Daily search read cap reached' },
  bad_sink: { status: 400, title: 'Invalid sink' },
  sink_not_found: { status: 404, title: 'No such sink' },
  sink_draining: { status: 409, title: 'Sink already draining' },
  approval_required: { status: 403, title: 'This needs another operator\u2019s approval first' },
  bad_retention: { status: 400, title: 'Invalid retention' },
  retention_changed: { status: 409, title: 'Retention changed meanwhile' },
  bad_alert_settings: { status: 400, title: 'Invalid alert settings' },
  alert_settings_changed: { status: 409, title: 'Alert settings changed meanwhile; this now needs approval' },
  alert_not_found: { status: 404, title: 'No such alert' },
  alert_acknowledged: { status: 409, title: 'Alert already acknowledged' },
  bad_acknowledgement: { status: 400, title: 'Invalid acknowledgement' },
  forged_event_not_found: { status: 404, title: 'No such event in the chain' },
  acknowledgement_mismatch: { status: 409, title: 'Not the event named' },
  event_not_forged: { status: 409, title: 'The event is not forged' },
  chain_broken: { status: 409, title: 'The chain is broken at the event' },
  already_acknowledged: { status: 409, title: 'Already acknowledged' },
});
