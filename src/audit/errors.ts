import { defineErrors } from '../platform/http/problem.ts';

export const auditError = defineErrors({
  bad_cursor: { status: 400, title: 'Invalid cursor' },
  bad_filter: { status: 400, title: 'Invalid filter' },
  range_too_large: { status: 400, title: 'Time range too large' },
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
});
